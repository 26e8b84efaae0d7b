// ReLU max(x, 0) and its backward dx = dy · [x > 0] (the hinge loss of IRFT, train/objectives/irft.ts).
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const reluKernel: Kernel = {
  name: 'relu',
  source: loadWgsl(import.meta.url, 'relu.wgsl'),
  inputs: ['x'],
  outputs: ['out'],
  params: [['n', 'u32']],
  constants: ['WG'],
};

export const reluBackwardKernel: Kernel = {
  name: 'reluBackward',
  source: loadWgsl(import.meta.url, 'relu_backward.wgsl'),
  inputs: ['x', 'dy'],
  outputs: ['dx'],
  params: [['n', 'u32']],
  constants: ['WG'],
};

const WG = 256;

export function reluCall(limits: DeviceLimits, n: number): KernelCall {
  return { kernel: reluKernel, constants: { WG }, params: { n }, workgroups: grid1d(n, WG, limits), cost: { flops: n, bytesRead: 4 * n, bytesWritten: 4 * n } };
}

export function reluBackwardCall(limits: DeviceLimits, n: number): KernelCall {
  return { kernel: reluBackwardKernel, constants: { WG }, params: { n }, workgroups: grid1d(n, WG, limits), cost: { flops: n, bytesRead: 8 * n, bytesWritten: 4 * n } };
}
