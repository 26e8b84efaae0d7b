// Mean softmax cross-entropy over the non-ignored targets, fused with its logits gradient.
//
// Three dispatches, no read-back: count the non-ignored targets into a 1-element buffer; one workgroup
// per row computes the row's loss and writes dlogits = (softmax - onehot) / count; a last kernel sums the
// row losses in a fixed order and divides by count. The gradient is saved for the backward, which only
// scales it by the upstream gradient.
//
// When every target is ignored the loss is 0 and the gradient is 0 (torch returns NaN there): a batch
// whose responses are all padding then leaves the parameters alone instead of poisoning them.
// dlogits takes as much memory as the logits while the tape holds it; it does not exist when no gradient is
// needed (noGrad, or logits that do not require one): the kernel's evaluation variant binds no dlogits.
import { gradEnabled, record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch, logitRowThreads } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { mul } from './elementwise.ts';
import { crossEntropyCall } from '../../kernels/cross_entropy.ts';
import { crossEntropyCountCall } from '../../kernels/cross_entropy_count.ts';
import { crossEntropyMeanCall } from '../../kernels/cross_entropy_mean.ts';

export interface CrossEntropyOptions {
  /** Targets equal to this contribute neither to the loss nor to the count (torch's default: -100). */
  ignoreIndex?: number;
}

/** logits [..., V] (f32), targets i32 with one entry per row of logits; returns a scalar. */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const V = logits.shape[logits.shape.length - 1];
  if (logits.dtype !== 'f32' || !(V >= 1)) throw new GpuError(`crossEntropy: logits must be f32 [..., V] with V >= 1, got ${logits.dtype} ${shapeString(logits.shape)}`);
  const rows = logits.numel / V;
  if (targets.dtype !== 'i32' || targets.numel !== rows)
    throw new GpuError(`crossEntropy: targets must be i32 with one entry per row of logits ${shapeString(logits.shape)} (${rows} rows), got ${targets.dtype} ${shapeString(targets.shape)}`);
  if (!Number.isInteger(ignoreIndex)) throw new GpuError(`crossEntropy: ignoreIndex ${ignoreIndex} is not an integer`);

  const writeGrad = gradEnabled() && logits.requiresGrad;
  const count = Tensor.empty([1], 'u32', 'crossEntropy count');
  const rowLoss = Tensor.empty([rows], 'f32', 'crossEntropy row losses');
  // Without a gradient the kernel's variant leaves count and dlogits out: null in their place.
  const dlogits = writeGrad ? Tensor.empty(logits.shape, 'f32', 'crossEntropy dlogits') : null;
  const loss = Tensor.empty([], 'f32', 'crossEntropy');
  launch(crossEntropyCountCall(deviceLimits(), rows, ignoreIndex), [targets], [count]);
  launch(crossEntropyCall(deviceLimits(), rows, V, ignoreIndex, writeGrad, logitRowThreads()), [logits, targets, dlogits ? count : null], [dlogits, rowLoss]);
  launch(crossEntropyMeanCall(deviceLimits(), rows), [rowLoss, count], [loss]);
  count.dispose();
  rowLoss.dispose();
  if (dlogits) {
    // forward was loss = mean_r(lse_r - x_r[t_r]) and wrote d loss / d logits, so dlogits_total = g * dlogits.
    record('crossEntropy', [logits], [loss], [dlogits], ([g]) => [mul(dlogits, g!)]);
    dlogits.dispose(); // the tape retained it when it recorded
  }
  return loss;
}
