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

/**
 * How a workgroup sums: its threads, and about how many elements each adds before the tree. A GPU wants many threads
 * in flight; a CPU driver (lavapipe) runs a workgroup's invocations as loops on one core, where each level of the
 * tree is a fiber switch: there 64 threads of 64 elements summed 1M elements in 2.7 ms against 7.7 ms for 256 of 16
 * (bench/RESULTS.md). The op picks by device (engine/ops/grad_norm.ts).
 */
export interface SquaredSumShape { threads: number; perThread: number }
export const SQUARED_SUM_SHAPES = { gpu: { threads: 256, perThread: 16 }, cpu: { threads: 64, perThread: 64 } } as const satisfies Record<string, SquaredSumShape>;

/** Workgroups (partial sums) for a tensor of n elements and the chunk each covers; 0 groups for an empty tensor. */
export function squaredSumPlan(limits: DeviceLimits, n: number, shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): { wg: number; groups: number; chunk: number } {
  const wg = reductionWorkgroupSize(limits, 4, 0, shape.threads);
  if (n === 0) return { wg, groups: 0, chunk: 0 };
  const groups = Math.min(ceilDiv(n, wg * shape.perThread), limits.maxComputeWorkgroupsPerDimension);
  return { wg, groups, chunk: ceilDiv(n, groups) };
}

/** out[outOffset + w] = sum of x[i]^2 over chunk w of squaredSumPlan(limits, n, shape), for every w. */
export function squaredSumCall(limits: DeviceLimits, n: number, outOffset: number, shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): KernelCall {
  const { wg, groups, chunk } = squaredSumPlan(limits, n, shape);
  return {
    kernel: squaredSumKernel,
    constants: { WG: wg, SQUARE: 1 },
    params: { n, chunk, outOffset },
    workgroups: [groups],
    cost: { flops: 2 * n, bytesRead: 4 * n, bytesWritten: 4 * groups },
  };
}

/** out[outOffset] = sum of x[0, n) in one workgroup: the final pass over the partial sums. */
export function partialSumCall(limits: DeviceLimits, n: number, outOffset: number, shape: SquaredSumShape = SQUARED_SUM_SHAPES.gpu): KernelCall {
  const wg = reductionWorkgroupSize(limits, 4, 0, shape.threads);
  return {
    kernel: squaredSumKernel,
    constants: { WG: wg, SQUARE: 0 },
    params: { n, chunk: n, outOffset },
    workgroups: [1],
    cost: { flops: n, bytesRead: 4 * n, bytesWritten: 4 },
    op: 'squaredSumFinal',
  };
}
