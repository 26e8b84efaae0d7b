// Fused RMSprop update of parameter ranges, up to a dispatch's slots of them at once (kernels/tensor_slots.ts):
// coupled decay, the square average and the step in one pass.
import { ELEMENTWISE_SHAPES, type DeviceLimits, type ElementwiseShape, type KernelCall } from './spec.ts';
import { elementwiseSlotCall, slotsPerDispatch, type SlotKernelSpec } from './tensor_slots.ts';

export const RMSPROP: SlotKernelSpec = {
  name: 'rmsprop',
  moduleUrl: import.meta.url,
  file: 'rmsprop.wgsl',
  includes: ['elementwise_slots.wgsl'],
  slotInputs: ['grad'],
  slotOutputs: ['param', 'v'],
  slotFields: [['n', 'u32'], ['offset', 'u32'], ['end', 'u32'], ['weightDecay', 'f32']],
  params: [['alpha', 'f32'], ['eps', 'f32'], ['lr', 'f32'], ['gradScale', 'f32'], ['perThread', 'u32']],
  constants: ['WG'],
  call: (s) => `update(&grad${s}, &param${s}, &v${s}, first, slot)`,
};

/** Parameter ranges one dispatch updates on this device: three storage bindings each. */
export function rmspropSlots(limits: DeviceLimits): number { return slotsPerDispatch(limits, 3); }

/** Step constants shared by a dispatch's ranges (see rmsprop.wgsl). */
export interface RMSpropStepParams { alpha: number; eps: number; lr: number; gradScale: number }

/** One range: param[offset, offset + n) with grad[offset, offset + n); its v holds n elements; weightDecay 0 where the table exempts it. */
export type RMSpropRange = { n: number; offset: number; weightDecay: number };

/**
 * Updates each range (1 to rmspropSlots of them); bind grad of each range, then param and v of each in order.
 * `quads`: in vec4f quads (tensor_slots.ts elementwiseSlotCall).
 */
export function rmspropCall(limits: DeviceLimits, ranges: readonly RMSpropRange[], step: RMSpropStepParams, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu, quads = false): KernelCall {
  const n = ranges.reduce((a, r) => a + r.n, 0);
  // Per element: gradient 3 (scale, decay multiply, add), v 4, parameter 5 (sqrt, add eps, lr·g, divide, subtract);
  // reads g, p, v; writes p, v.
  return elementwiseSlotCall(limits, RMSPROP, ranges, { ...step }, shape, quads, { flops: 12 * n, bytesRead: 12 * n, bytesWritten: 8 * n });
}
