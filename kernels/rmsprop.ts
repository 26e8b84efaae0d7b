// Fused RMSprop update of one parameter range: coupled decay, the square average and the step in one pass.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const rmspropKernel: Kernel = {
  name: 'rmsprop',
  source: loadWgsl(import.meta.url, 'rmsprop.wgsl'),
  inputs: ['grad'],
  outputs: ['param', 'v'],
  params: [['n', 'u32'], ['offset', 'u32'], ['alpha', 'f32'], ['eps', 'f32'], ['lr', 'f32'], ['weightDecay', 'f32'], ['gradScale', 'f32']],
  constants: ['WG'],
};

/** Step constants (see rmsprop.wgsl); weightDecay is 0 for a parameter the table exempts from decay. */
export interface RMSpropStepParams { alpha: number; eps: number; lr: number; weightDecay: number; gradScale: number }

const WG = 256; // WebGPU guarantees 256 invocations per workgroup; the kernel uses no workgroup memory

/** Updates param[offset, offset + n) with grad[offset, offset + n); v has n elements. */
export function rmspropCall(limits: DeviceLimits, n: number, offset: number, step: RMSpropStepParams): KernelCall {
  return {
    kernel: rmspropKernel,
    constants: { WG },
    params: { n, offset, ...step },
    workgroups: grid1d(n, WG, limits),
    // Per element: gradient 3 (scale, decay multiply, add), v 4, parameter 5 (sqrt, add eps, lr·g, divide, subtract);
    // reads g, p, v; writes p, v.
    cost: { flops: 12 * n, bytesRead: 12 * n, bytesWritten: 8 * n },
  };
}
