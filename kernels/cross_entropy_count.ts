// Counts the targets that are not ignored, on the GPU, so that the mean needs no read-back.
import { loadWgsl, type Kernel, type KernelCall, reductionWorkgroupSize, type DeviceLimits } from './spec.ts';

export const crossEntropyCountKernel: Kernel = {
  name: 'crossEntropyCount',
  source: loadWgsl(import.meta.url, 'cross_entropy_count.wgsl'),
  inputs: ['targets'],
  outputs: ['count'],
  params: [['rows', 'u32'], ['ignoreIndex', 'i32']],
  constants: ['WG'],
};

export function crossEntropyCountCall(limits: DeviceLimits, rows: number, ignoreIndex: number): KernelCall {
  return {
    kernel: crossEntropyCountKernel,
    constants: { WG: reductionWorkgroupSize(limits, 4) },
    params: { rows, ignoreIndex },
    workgroups: [1],
    cost: { flops: rows, bytesRead: 4 * rows, bytesWritten: 4 },
  };
}
