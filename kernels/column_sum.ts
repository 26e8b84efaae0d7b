// Sums partials [blocks, cols] over blocks in a fixed order: the deterministic second stage of weight gradients.
import { gpu } from '../engine/gpu.ts';
import { grid1d, loadWgsl, type Kernel, type KernelCall } from '../engine/kernel.ts';

export const columnSumKernel: Kernel = {
  name: 'columnSum',
  source: loadWgsl(import.meta.url, 'column_sum.wgsl'),
  inputs: ['partials'],
  outputs: ['out'],
  params: [['blocks', 'u32'], ['cols', 'u32']],
  constants: ['WG'],
};

export function columnSumCall(blocks: number, cols: number): KernelCall {
  const { limits } = gpu();
  const WG = Math.min(256, limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  return {
    kernel: columnSumKernel,
    constants: { WG },
    params: { blocks, cols },
    workgroups: grid1d(cols, WG),
    cost: { flops: blocks * cols, bytesRead: 4 * blocks * cols, bytesWritten: 4 * cols },
  };
}
