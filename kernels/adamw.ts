// Fused AdamW update of parameter ranges, up to a dispatch's slots of them at once (kernels/tensor_slots.ts): decay,
// both moments and the step in one pass.
import { ELEMENTWISE_SHAPES, elementsPerThread, KernelError, type DeviceLimits, type ElementwiseShape, type KernelCall } from './spec.ts';
import { slotCall, slotsPerDispatch, type SlotKernelSpec } from './tensor_slots.ts';

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

/** Whether the ranges can be updated in quads (adamwCall's `quads`): every count and offset a multiple of 4. */
export function adamwQuadsFit(ranges: readonly AdamWRange[]): boolean { return ranges.every((r) => r.n % 4 === 0 && r.offset % 4 === 0); }

/**
 * Updates each range (1 to adamwSlots of them); bind grad of each range, then param, m and v of each in order.
 * `quads`: each thread element a vec4f of 4 (adamwQuadsFit; the bindings hold whole quads), the same arithmetic
 * lane by lane, so the same bits; on a CPU driver 4 elements a load.
 */
export function adamwCall(limits: DeviceLimits, ranges: readonly AdamWRange[], step: AdamWStepParams, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu, quads = false): KernelCall {
  if (quads && !adamwQuadsFit(ranges)) throw new KernelError(`adamw in quads: ranges ${JSON.stringify(ranges.map(({ n, offset }) => ({ n, offset })))} are not all multiples of 4`);
  const n = ranges.reduce((a, r) => a + r.n, 0);
  const width = quads ? 4 : 1;
  const slots = ranges.map((r) => ({ ...r, n: r.n / width, offset: r.offset / width }));
  const perThread = elementsPerThread(n / width, shape);
  // Per element: gradient scale 1, m 3, v 4, parameter 7 (decay, sqrt, two divides, add, multiply, subtract);
  // reads g, p, m, v; writes p, m, v.
  return slotCall(limits, ADAMW, slots, (s) => Math.ceil(slots[s].n / (shape.threads * perThread)), { ...step, perThread },
    { constants: { WG: shape.threads }, cost: { flops: 15 * n, bytesRead: 16 * n, bytesWritten: 12 * n } }, quads ? 'vec4f' : 'f32');
}
