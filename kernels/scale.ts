// out = alpha · x over a contiguous tensor, and with alpha = 1 a copy: a vec4 per invocation where it divides.
import { ELEMENTWISE_SHAPES, elementwiseQuadsLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

function scaleVariant(value: 'f32' | 'vec4f'): Kernel {
  return {
    name: 'scale',
    source: wgsl(import.meta.url, 'scale.wgsl', { includes: ['elementwise_main.wgsl'], placeholders: { VALUE: value } }),
    inputs: ['x'], outputs: ['out'], params: [['n', 'u32'], ['perThread', 'u32'], ['alpha', 'f32']], constants: ['WG'],
  };
}

export const scaleKernel = scaleVariant('f32');
export const scaleVec4Kernel = scaleVariant('vec4f');

/** alpha · x over n f32 elements; `op` names it in the ledger ('copy', with alpha = 1, costs no flops; a scale by 1 still multiplies). */
export function scaleCall(limits: DeviceLimits, n: number, alpha: number, op = 'scale', shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { quads, values, constants, perThread, workgroups } = elementwiseQuadsLaunch(limits, n, shape, 'scale');
  return {
    kernel: quads ? scaleVec4Kernel : scaleKernel, op, constants, params: { n: values, perThread, alpha },
    workgroups,
    cost: { flops: op === 'copy' ? 0 : n, bytesRead: 4 * n, bytesWritten: 4 * n },
  };
}
