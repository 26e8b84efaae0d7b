// Fused AdamW update of parameter ranges, up to a dispatch's slots of them at once (kernels/tensor_slots.ts): decay,
// both moments and the step in one pass.
import { ELEMENTWISE_SHAPES, type DeviceLimits, type ElementwiseShape, type KernelCall } from './spec.ts';
import { elementwiseSlotCall, slotsPerDispatch, type SlotKernelSpec } from './tensor_slots.ts';

export const ADAMW: SlotKernelSpec = {
  name: 'adamw',
  moduleUrl: import.meta.url,
  file: 'adamw.wgsl',
  includes: ['elementwise_slots.wgsl'],
  slotInputs: ['grad'],
  slotOutputs: ['param', 'm', 'v'],
  slotFields: [['n', 'u32'], ['offset', 'u32'], ['end', 'u32'], ['decayFactor', 'f32']],
  params: [['beta1', 'f32'], ['beta2', 'f32'], ['eps', 'f32'], ['stepSize', 'f32'], ['bc2Sqrt', 'f32'], ['gradScale', 'f32'], ['perThread', 'u32']],
  constants: ['WG'],
  call: (s) => `update(&grad${s}, &param${s}, &m${s}, &v${s}, first, slot)`,
};

/** Parameter ranges one dispatch updates on this device: four storage bindings each. */
export function adamwSlots(limits: DeviceLimits): number { return slotsPerDispatch(limits, 4); }

/** Step constants shared by a dispatch's ranges, computed on the host in float64 (see adamw.wgsl); gradScale multiplies every gradient element. */
export interface AdamWStepParams { beta1: number; beta2: number; eps: number; stepSize: number; bc2Sqrt: number; gradScale: number }

/** One range: param[offset, offset + n) with grad[offset, offset + n); its m and v hold n elements. */
export type AdamWRange = { n: number; offset: number; decayFactor: number };

/**
 * Updates each range (1 to adamwSlots of them); bind grad of each range, then param, m and v of each in order.
 * `quads`: in vec4f quads (tensor_slots.ts elementwiseSlotCall).
 */
export function adamwCall(limits: DeviceLimits, ranges: readonly AdamWRange[], step: AdamWStepParams, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu, quads = false): KernelCall {
  const n = ranges.reduce((a, r) => a + r.n, 0);
  // Per element: gradient scale 1, m 3, v 4, parameter 7 (decay, sqrt, two divides, add, multiply, subtract);
  // reads g, p, m, v; writes p, m, v.
  return elementwiseSlotCall(limits, ADAMW, ranges, { ...step }, shape, quads, { flops: 15 * n, bytesRead: 16 * n, bytesWritten: 12 * n });
}
