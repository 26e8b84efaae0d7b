// The mean of the per-row cross-entropy losses over the non-ignored rows, in a fixed summation order.
import { loadWgsl, type Kernel, type KernelCall, reductionWorkgroupSize, type DeviceLimits } from './spec.ts';

export const crossEntropyMeanKernel: Kernel = {
  name: 'crossEntropyMean',
  source: loadWgsl(import.meta.url, 'cross_entropy_mean.wgsl'),
  inputs: ['rowLoss', 'count'],
  outputs: ['loss'],
  params: [['rows', 'u32']],
  constants: ['WG'],
};

export function crossEntropyMeanCall(limits: DeviceLimits, rows: number): KernelCall {
  return {
    kernel: crossEntropyMeanKernel,
    constants: { WG: reductionWorkgroupSize(limits, 4) },
    params: { rows },
    workgroups: [1],
    cost: { flops: rows + 1, bytesRead: 4 * rows + 4, bytesWritten: 4 },
  };
}
