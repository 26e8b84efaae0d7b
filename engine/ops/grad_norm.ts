// The squared global L2 norm of many tensors (torch.nn.utils.clip_grad_norm_'s norm, squared), on the GPU and off
// the tape: a fixed set of partial sums per tensor, in table order, several tensors a dispatch, then one fixed-order
// sum. Deterministic.
import { GpuError } from '../gpu.ts';
import { bindingWindows, deviceLimits, launch, byDevice } from '../launch.ts';
import { Tensor, shapeString, tidy } from '../tensor.ts';
import { partialSumCall, SQUARED_SUM_SHAPES, squaredSumCall, squaredSumPlan, squaredSumSlots, type SquaredSumShape } from '../../kernels/squared_sum.ts';

/**
 * Σ over every tensor t and element i of t[i]², as f32: into out[index] when `out` is given (e.g. a small
 * buffer read back once with other numbers), else into a new scalar [1]. Returns the tensor written. `reduction`:
 * the partial sums' workgroup shape, the device's by default (SQUARED_SUM_SHAPES).
 */
export function gradNormSquared(tensors: readonly Tensor[], out?: Tensor, index = 0, reduction: SquaredSumShape = byDevice(SQUARED_SUM_SHAPES)): Tensor {
  for (const t of tensors) if (t.dtype !== 'f32') throw new GpuError(`gradNormSquared: tensor ${t.name ? `'${t.name}' ` : ''}${t.dtype} ${shapeString(t.shape)} is not f32`);
  if (out && (out.dtype !== 'f32' || !(Number.isInteger(index) && index >= 0 && index < out.numel)))
    throw new GpuError(`gradNormSquared: index ${index} into ${out.dtype} ${shapeString(out.shape)}`);
  const limits = deviceLimits();
  // A tensor larger than one binding is summed window by window, each into its own partials, in table order.
  let total = 0;
  const pieces = tensors.flatMap((t) => bindingWindows(t.numel, 4).flatMap(({ first, count }) => {
    const outOffset = total;
    total += squaredSumPlan(limits, count, reduction).groups;
    return count > 0 ? [{ t, first, count, outOffset }] : [];
  }));
  const partials = Tensor.empty([Math.max(1, total)], 'f32', 'gradNormSquared partials');
  const slots = squaredSumSlots(limits);
  for (let i = 0; i < pieces.length; i += slots) {
    const group = pieces.slice(i, i + slots);
    tidy(() => launch(squaredSumCall(limits, group.map((p) => ({ n: p.count, outOffset: p.outOffset })), reduction),
      group.map(({ t, first, count }) => (count === t.numel ? t : t.reshape([-1]).rows(first, count))), [partials]));
  }
  const result = out ?? Tensor.empty([1], 'f32', 'gradNormSquared');
  launch(partialSumCall(limits, total, index, reduction), [partials], [result]);
  partials.dispose();
  return result;
}
