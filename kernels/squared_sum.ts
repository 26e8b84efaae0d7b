// Deterministic sum of squares of many tensors (the global gradient norm): one pass per tensor into fixed
// partial sums, then one workgroup adds the partials in order. No atomics, so the result is bit-reproducible.
import { ceilDiv, reductionWorkgroupSize, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

export const squaredSumKernel: Kernel = {
  name: 'squaredSum',
  source: wgsl(import.meta.url, 'squared_sum.wgsl', { includes: ['workgroup_sum.wgsl'] }),
  inputs: ['x'],
  outputs: ['out'],
  params: [['n', 'u32'], ['chunk', 'u32'], ['outOffset', 'u32']],
  constants: ['WG', 'SQUARE'],
};

/** Elements one workgroup sums per thread before the tree (a target; the last chunk is shorter). */
const PER_THREAD = 16;

/** Workgroups (partial sums) for a tensor of n elements and the chunk each covers; 0 groups for an empty tensor. */
export function squaredSumPlan(limits: DeviceLimits, n: number): { wg: number; groups: number; chunk: number } {
  const wg = reductionWorkgroupSize(limits, 4);
  if (n === 0) return { wg, groups: 0, chunk: 0 };
  const groups = Math.min(ceilDiv(n, wg * PER_THREAD), limits.maxComputeWorkgroupsPerDimension);
  return { wg, groups, chunk: ceilDiv(n, groups) };
}

/** out[outOffset + w] = sum of x[i]^2 over chunk w of squaredSumPlan(limits, n), for every w. */
export function squaredSumCall(limits: DeviceLimits, n: number, outOffset: number): KernelCall {
  const { wg, groups, chunk } = squaredSumPlan(limits, n);
  return {
    kernel: squaredSumKernel,
    constants: { WG: wg, SQUARE: 1 },
    params: { n, chunk, outOffset },
    workgroups: [groups],
    cost: { flops: 2 * n, bytesRead: 4 * n, bytesWritten: 4 * groups },
  };
}

/** out[outOffset] = sum of x[0, n) in one workgroup: the final pass over the partial sums. */
export function partialSumCall(limits: DeviceLimits, n: number, outOffset: number): KernelCall {
  const wg = reductionWorkgroupSize(limits, 4);
  return {
    kernel: squaredSumKernel,
    constants: { WG: wg, SQUARE: 0 },
    params: { n, chunk: n, outOffset },
    workgroups: [1],
    cost: { flops: n, bytesRead: 4 * n, bytesWritten: 4 },
    op: 'squaredSumFinal',
  };
}
