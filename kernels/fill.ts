// Fills a tensor with one value.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const fillKernel: Kernel = {
  name: 'fill',
  source: loadWgsl(import.meta.url, 'fill.wgsl'),
  inputs: [],
  outputs: ['out'],
  params: [['n', 'u32'], ['value', 'f32']],
  constants: ['WG'],
};

const WG = 256;

export function fillCall(limits: DeviceLimits, n: number, value: number): KernelCall {
  return { kernel: fillKernel, constants: { WG }, params: { n, value }, workgroups: grid1d(n, WG, limits), cost: { flops: 0, bytesRead: 0, bytesWritten: 4 * n } };
}
