// Sums partials [blocks, cols] over blocks in a fixed order: the deterministic second stage of weight gradients.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const columnSumKernel: Kernel = {
  name: 'columnSum',
  source: loadWgsl(import.meta.url, 'column_sum.wgsl'),
  inputs: ['partials'],
  outputs: ['out'],
  params: [['blocks', 'u32'], ['cols', 'u32']],
  constants: ['WG'],
};

export function columnSumCall(limits: DeviceLimits, blocks: number, cols: number): KernelCall {
  const WG = Math.min(256, limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  return {
    kernel: columnSumKernel,
    constants: { WG },
    params: { blocks, cols },
    workgroups: grid1d(cols, WG, limits),
    cost: { flops: blocks * cols, bytesRead: 4 * blocks * cols, bytesWritten: 4 * cols },
  };
}
