// acc += x, for gradient accumulation into parameters.
import { ELEMENTWISE_SHAPES, elementwiseQuadsLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

function accumulateVariant(value: 'f32' | 'vec4f'): Kernel {
  return {
    name: 'accumulate',
    source: wgsl(import.meta.url, 'accumulate.wgsl', { includes: ['elementwise_main.wgsl'], placeholders: { VALUE: value } }),
    inputs: ['x'],
    outputs: ['acc'],
    params: [['n', 'u32'], ['perThread', 'u32']],
    constants: ['WG'],
  };
}

export const accumulateKernel = accumulateVariant('f32');
export const accumulateVec4Kernel = accumulateVariant('vec4f');

/** acc += x over n f32 elements: a vec4 per element of the kernel where n divides by 4 (the same adds, lane by lane). */
export function accumulateCall(limits: DeviceLimits, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { quads, values, constants, perThread, workgroups } = elementwiseQuadsLaunch(limits, n, shape, 'accumulate');
  return { kernel: quads ? accumulateVec4Kernel : accumulateKernel, constants, params: { n: values, perThread }, workgroups, cost: { flops: n, bytesRead: 8 * n, bytesWritten: 4 * n } };
}
