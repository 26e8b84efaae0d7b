// Deterministic sum of squares of many tensors (the global gradient norm): fixed partial sums per tensor, up to a
// dispatch's slots of tensors at once (kernels/tensor_slots.ts), then one workgroup adds the partials in order. No
// atomics, so the result is bit-reproducible.
import { ceilDiv, reductionWorkgroupSize, type DeviceLimits, type KernelCall } from './spec.ts';
import { slotCall, slotsPerDispatch, type SlotKernelSpec } from './tensor_slots.ts';

export const SQUARED_SUM: SlotKernelSpec = {
  name: 'squaredSum',
  moduleUrl: import.meta.url,
  file: 'squared_sum.wgsl',
  includes: ['workgroup_sum.wgsl'],
  slotInputs: ['x'],
  slotOutputs: [],
  outputs: ['out'],
  slotFields: [['n', 'u32'], ['chunk', 'u32'], ['end', 'u32'], ['outOffset', 'u32']],
  constants: ['WG', 'SQUARE'],
  call: (s) => `s = threadSum(&x${s}, slot, w - owner.y, lid)`,
};

/** Tensors one dispatch sums on this device: a storage binding each, beside the partials. */
export function squaredSumSlots(limits: DeviceLimits): number { return slotsPerDispatch(limits, 1, 1); }

/**
 * How a workgroup sums: its threads, and about how many elements each adds before the tree. A GPU wants many threads
 * in flight; a CPU driver (lavapipe) runs a workgroup's invocations as loops on one core, where each level of the
 * tree is a fiber switch: there 64 threads of 64 elements summed 1M elements in 2.7 ms against 7.7 ms for 256 of 16,
 * and 8 threads (one fiber) of 256 in 1.7-2.0 ms against 2.6-3.1 for 64 of 64, the demo's table 0.7-0.9 against 1.0-1.2
 * (bench/RESULTS.md). The op picks by device (engine/ops/grad_norm.ts).
 */
export interface SquaredSumShape { threads: number; perThread: number }
export const SQUARED_SUM_SHAPES = { gpu: { threads: 256, perThread: 16 }, cpu: { threads: 8, perThread: 256 } } as const satisfies Record<string, SquaredSumShape>;

/** Workgroups (partial sums) for a tensor of n elements and the chunk each covers; 0 groups for an empty tensor. */
export function squaredSumPlan(limits: DeviceLimits, n: number, shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): { wg: number; groups: number; chunk: number } {
  const wg = reductionWorkgroupSize(limits, 4, 0, shape.threads);
  if (n === 0) return { wg, groups: 0, chunk: 0 };
  const groups = Math.min(ceilDiv(n, wg * shape.perThread), limits.maxComputeWorkgroupsPerDimension);
  return { wg, groups, chunk: ceilDiv(n, groups) };
}

/**
 * For each tensor (1 to squaredSumSlots of them, n elements each, none empty), out[outOffset + w] = the sum of x[i]^2
 * over chunk w of squaredSumPlan(limits, n, shape), for every w: the partials of a tensor are its plan's, whatever
 * tensors share its dispatch. Bind the tensors in order, then out.
 */
export function squaredSumCall(limits: DeviceLimits, tensors: readonly { n: number; outOffset: number }[], shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): KernelCall {
  const plans = tensors.map((t) => squaredSumPlan(limits, t.n, shape));
  const n = tensors.reduce((a, t) => a + t.n, 0), groups = plans.reduce((a, p) => a + p.groups, 0);
  return slotCall(limits, SQUARED_SUM, tensors.map((t, s) => ({ ...t, chunk: plans[s].chunk })), (s) => plans[s].groups, {},
    { constants: { WG: plans[0].wg, SQUARE: 1 }, cost: { flops: 2 * n, bytesRead: 4 * n, bytesWritten: 4 * groups } });
}

/** out[outOffset] = sum of x[0, n) in one workgroup: the final pass over the partial sums. */
export function partialSumCall(limits: DeviceLimits, n: number, outOffset: number, shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): KernelCall {
  const wg = reductionWorkgroupSize(limits, 4, 0, shape.threads);
  return slotCall(limits, SQUARED_SUM, [{ n, chunk: n, outOffset }], () => 1, {},
    { constants: { WG: wg, SQUARE: 0 }, cost: { flops: n, bytesRead: 4 * n, bytesWritten: 4 }, op: 'squaredSumFinal' });
}
