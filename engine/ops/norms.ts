// LayerNorm and RMSNorm over the last dim: fused forward kernels that save per-row statistics, and fused
// backward kernels that write dx and per-block weight-gradient partials, summed by a deterministic
// second stage (no atomics: two backward runs give bit-identical gradients).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch, rowReductionShape } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { add } from './elementwise.ts';
import { layerNormForwardCall } from '../../kernels/layernorm_forward.ts';
import { layerNormBackwardCall, normRowBlocks } from '../../kernels/layernorm_backward.ts';
import { rmsNormForwardCall } from '../../kernels/rmsnorm_forward.ts';
import { rmsNormBackwardCall } from '../../kernels/rmsnorm_backward.ts';
import { columnSumCall, columnSumSlots } from '../../kernels/column_sum.ts';

/** rows x cols of x [..., cols], after checking that each parameter has cols elements. */
function normShape(op: string, x: Tensor, params: Record<string, Tensor>): { rows: number; cols: number } {
  const cols = x.shape[x.rank - 1];
  if (x.rank < 1 || cols < 1 || x.dtype !== 'f32') throw new GpuError(`${op}: x must be f32 [..., C] with C >= 1, got ${x.dtype} ${shapeString(x.shape)}`);
  for (const [name, p] of Object.entries(params))
    if (p.numel !== cols || p.dtype !== 'f32') throw new GpuError(`${op}: ${name} must be f32 with ${cols} elements (x is ${shapeString(x.shape)}), got ${p.dtype} ${shapeString(p.shape)}`);
  return { rows: x.numel / cols, cols };
}

function checkGradShape(op: string, x: Tensor, dy: Tensor): void {
  if (dy.numel !== x.numel || dy.dtype !== 'f32') throw new GpuError(`${op}: dy ${dy.dtype} ${shapeString(dy.shape)} does not match x ${shapeString(x.shape)}`);
}

/** Each of the partials [blocks, cols] summed over blocks, with the given shape, several a dispatch; disposes the partials. */
function sumBlocks(partials: readonly Tensor[], shape: readonly number[]): Tensor[] {
  const outs = partials.map(() => Tensor.empty(shape, 'f32', 'norm weight gradient'));
  const slots = columnSumSlots(deviceLimits());
  for (let i = 0; i < partials.length; i += slots) {
    const group = partials.slice(i, i + slots);
    launch(columnSumCall(deviceLimits(), group.map((p) => ({ blocks: p.shape[0], cols: p.shape[1] })), elementwiseShape()), group, outs.slice(i, i + slots));
  }
  for (const p of partials) p.dispose();
  return outs;
}

/** y = (x - mean) * rstd * weight + bias over the last dim, rstd = 1 / sqrt(biased var + eps). */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const { rows, cols } = normShape('layerNorm', x, { weight, bias });
  const y = Tensor.empty(x.shape, 'f32', 'layerNorm');
  const mean = Tensor.empty([rows], 'f32', 'layerNorm mean');
  const rstd = Tensor.empty([rows], 'f32', 'layerNorm rstd');
  launch(layerNormForwardCall(deviceLimits(), rowReductionShape(), rows, cols, eps), [x, weight, bias, null, null], [y, null, mean, rstd]);
  record('layerNorm', [x, weight, bias], [y], [x, weight, mean, rstd], ([dy]) => {
    const { dx, dweight, dbias } = layerNormBackward(x, weight, dy!, mean, rstd);
    return [dx, weight.requiresGrad ? dweight : null, bias.requiresGrad ? dbias : null];
  });
  mean.dispose(); // the tape retained the statistics when it recorded
  rstd.dispose();
  return y;
}

/**
 * [layerNorm(x, weight, bias), layerNorm(x, weight2, bias2)] from one pass over x's row statistics (GPT-NeoX's
 * parallel residual: the attention's and the MLP's norms of the same x). Forward was y_i = xhat · w_i + b_i, so dx
 * is the sum of the two norms' dx, each from its own weight and dy.
 */
export function layerNormPair(x: Tensor, [weight, bias]: readonly [Tensor, Tensor], [weight2, bias2]: readonly [Tensor, Tensor], eps: number): [Tensor, Tensor] {
  const { rows, cols } = normShape('layerNormPair', x, { weight, bias });
  normShape('layerNormPair', x, { weight: weight2, bias: bias2 });
  const y = Tensor.empty(x.shape, 'f32', 'layerNorm');
  const y2 = Tensor.empty(x.shape, 'f32', 'layerNorm');
  const mean = Tensor.empty([rows], 'f32', 'layerNorm mean');
  const rstd = Tensor.empty([rows], 'f32', 'layerNorm rstd');
  launch(layerNormForwardCall(deviceLimits(), rowReductionShape(), rows, cols, eps, true), [x, weight, bias, weight2, bias2], [y, y2, mean, rstd]);
  record('layerNormPair', [x, weight, bias, weight2, bias2], [y, y2], [x, weight, weight2, mean, rstd], ([dy, dy2]) => {
    // The four weight gradients take one dispatch.
    const one = dy ? layerNormBackwardPartials(x, weight, dy, mean, rstd) : null;
    const two = dy2 ? layerNormBackwardPartials(x, weight2, dy2, mean, rstd) : null;
    const dx = one && two ? add(one.dx, two.dx) : (one ?? two)!.dx;
    const sums = sumBlocks([one, two].flatMap((n) => (n ? [n.partialWeight, n.partialBias] : [])), weight.shape);
    const [dw, db] = one ? sums.slice(0, 2) : [null, null];
    const [dw2, db2] = two ? sums.slice(one ? 2 : 0) : [null, null];
    const grad = (t: Tensor | null, w: Tensor) => (t && w.requiresGrad ? t : null);
    return [dx, grad(dw, weight), grad(db, bias), grad(dw2, weight2), grad(db2, bias2)];
  });
  mean.dispose(); // the tape retained the statistics when it recorded
  rstd.dispose();
  return [y, y2];
}

/** The gradients of layerNorm, from the mean and rstd its forward saved; not recorded on the tape. */
export function layerNormBackward(x: Tensor, weight: Tensor, dy: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; dweight: Tensor; dbias: Tensor } {
  const { dx, partialWeight, partialBias } = layerNormBackwardPartials(x, weight, dy, mean, rstd);
  const [dweight, dbias] = sumBlocks([partialWeight, partialBias], weight.shape);
  return { dx, dweight, dbias };
}

/** dx and the blocks' partial weight and bias gradients. */
function layerNormBackwardPartials(x: Tensor, weight: Tensor, dy: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; partialWeight: Tensor; partialBias: Tensor } {
  const { rows, cols } = normShape('layerNormBackward', x, { weight });
  checkGradShape('layerNormBackward', x, dy);
  const { blocks } = normRowBlocks(rows);
  const dx = Tensor.empty(x.shape, 'f32', 'layerNorm dx');
  const partialWeight = Tensor.empty([blocks, cols], 'f32', 'layerNorm dweight partials');
  const partialBias = Tensor.empty([blocks, cols], 'f32', 'layerNorm dbias partials');
  launch(layerNormBackwardCall(deviceLimits(), rowReductionShape(), rows, cols), [x, weight, dy, mean, rstd], [dx, partialWeight, partialBias]);
  return { dx, partialWeight, partialBias };
}

/** y = x * rstd * weight over the last dim, rstd = 1 / sqrt(mean(x^2) + eps): LlamaRMSNorm in f32. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const { rows, cols } = normShape('rmsNorm', x, { weight });
  const y = Tensor.empty(x.shape, 'f32', 'rmsNorm');
  const rstd = Tensor.empty([rows], 'f32', 'rmsNorm rstd');
  launch(rmsNormForwardCall(deviceLimits(), rowReductionShape(), rows, cols, eps), [x, weight], [y, rstd]);
  record('rmsNorm', [x, weight], [y], [x, weight, rstd], ([dy]) => {
    const { dx, dweight } = rmsNormBackward(x, weight, dy!, rstd);
    return [dx, weight.requiresGrad ? dweight : null];
  });
  rstd.dispose(); // the tape retained it when it recorded
  return y;
}

/** The gradients of rmsNorm, from the rstd its forward saved; not recorded on the tape. */
export function rmsNormBackward(x: Tensor, weight: Tensor, dy: Tensor, rstd: Tensor): { dx: Tensor; dweight: Tensor } {
  const { rows, cols } = normShape('rmsNormBackward', x, { weight });
  checkGradShape('rmsNormBackward', x, dy);
  const { blocks } = normRowBlocks(rows);
  const dx = Tensor.empty(x.shape, 'f32', 'rmsNorm dx');
  const partialWeight = Tensor.empty([blocks, cols], 'f32', 'rmsNorm dweight partials');
  launch(rmsNormBackwardCall(deviceLimits(), rowReductionShape(), rows, cols), [x, weight, dy, rstd], [dx, partialWeight]);
  return { dx, dweight: sumBlocks([partialWeight], weight.shape)[0] };
}
