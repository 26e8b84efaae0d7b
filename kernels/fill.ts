// Fills a tensor with one value.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const fillKernel: Kernel = {
  name: 'fill',
  source: wgsl(import.meta.url, 'fill.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: [],
  outputs: ['out'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['value', 'f32']],
  constants: ['WG'],
};

export function fillCall(limits: DeviceLimits, n: number, value: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return { kernel: fillKernel, constants, params: { n, perThread, value }, workgroups, cost: { flops: 0, bytesRead: 0, bytesWritten: 4 * n } };
}
