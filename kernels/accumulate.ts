// acc += x, for gradient accumulation into parameters.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const accumulateKernel: Kernel = {
  name: 'accumulate',
  source: loadWgsl(import.meta.url, 'accumulate.wgsl'),
  inputs: ['x'],
  outputs: ['acc'],
  params: [['n', 'u32']],
  constants: ['WG'],
};

const WG = 256;

export function accumulateCall(limits: DeviceLimits, n: number): KernelCall {
  return { kernel: accumulateKernel, constants: { WG }, params: { n }, workgroups: grid1d(n, WG, limits), cost: { flops: n, bytesRead: 8 * n, bytesWritten: 4 * n } };
}
