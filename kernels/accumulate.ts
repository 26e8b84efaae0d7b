// acc += x, for gradient accumulation into parameters.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const accumulateKernel: Kernel = {
  name: 'accumulate',
  source: wgsl(import.meta.url, 'accumulate.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: ['x'],
  outputs: ['acc'],
  params: [['n', 'u32'], ['perThread', 'u32']],
  constants: ['WG'],
};

export function accumulateCall(limits: DeviceLimits, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return { kernel: accumulateKernel, constants, params: { n, perThread }, workgroups, cost: { flops: n, bytesRead: 8 * n, bytesWritten: 4 * n } };
}
