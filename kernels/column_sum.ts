// Sums partials [blocks, cols] over blocks in a fixed order: the deterministic second stage of weight gradients, up to
// a dispatch's slots of them at once (kernels/tensor_slots.ts).
import { ELEMENTWISE_SHAPES, elementsPerThread, type DeviceLimits, type ElementwiseShape, type KernelCall } from './spec.ts';
import { slotCall, slotsPerDispatch, type SlotKernelSpec } from './tensor_slots.ts';

export const COLUMN_SUM: SlotKernelSpec = {
  name: 'columnSum',
  moduleUrl: import.meta.url,
  file: 'column_sum.wgsl',
  includes: ['elementwise_slots.wgsl'],
  slotInputs: ['partials'],
  slotOutputs: ['out'],
  slotFields: [['n', 'u32'], ['blocks', 'u32'], ['end', 'u32'], ['unused', 'u32']],
  params: [['perThread', 'u32']],
  constants: ['WG'],
  call: (s) => `update(&partials${s}, &out${s}, first, slot)`,
};

/** Sums one dispatch takes on this device: two storage bindings each. */
export function columnSumSlots(limits: DeviceLimits): number { return slotsPerDispatch(limits, 2); }

/** out_s[j] = Σ_p partials_s[p, j] for each sum (1 to columnSumSlots of them); bind the partials in order, then the outs. */
export function columnSumCall(limits: DeviceLimits, sums: readonly { blocks: number; cols: number }[], shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const cols = sums.reduce((a, s) => a + s.cols, 0), elements = sums.reduce((a, s) => a + s.blocks * s.cols, 0);
  const perThread = elementsPerThread(cols, shape);
  return slotCall(limits, COLUMN_SUM, sums.map((s) => ({ n: s.cols, blocks: s.blocks, unused: 0 })), (s) => Math.ceil(sums[s].cols / (shape.threads * perThread)), { perThread },
    { constants: { WG: shape.threads }, cost: { flops: elements, bytesRead: 4 * elements, bytesWritten: 4 * cols } });
}
