// Fused AdamW update of one parameter range: decay, both moments and the step in one pass.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const adamwKernel: Kernel = {
  name: 'adamw',
  source: loadWgsl(import.meta.url, 'adamw.wgsl'),
  inputs: ['grad'],
  outputs: ['param', 'm', 'v'],
  params: [['n', 'u32'], ['offset', 'u32'], ['beta1', 'f32'], ['beta2', 'f32'], ['eps', 'f32'],
    ['decayFactor', 'f32'], ['stepSize', 'f32'], ['bc2Sqrt', 'f32'], ['gradScale', 'f32']],
  constants: ['WG'],
};

/** Step constants, computed on the host in float64 (see adamw.wgsl); gradScale multiplies every gradient element. */
export interface AdamWStepParams { beta1: number; beta2: number; eps: number; decayFactor: number; stepSize: number; bc2Sqrt: number; gradScale: number }

const WG = 256; // WebGPU guarantees 256 invocations per workgroup; the kernel uses no workgroup memory

/** Updates param[offset, offset + n) with grad[offset, offset + n); m and v have n elements. */
export function adamwCall(limits: DeviceLimits, n: number, offset: number, step: AdamWStepParams): KernelCall {
  return {
    kernel: adamwKernel,
    constants: { WG },
    params: { n, offset, ...step },
    workgroups: grid1d(n, WG, limits),
    // Per element: gradient scale 1, m 3, v 4, parameter 7 (decay, sqrt, two divides, add, multiply, subtract);
    // reads g, p, m, v; writes p, m, v.
    cost: { flops: 15 * n, bytesRead: 16 * n, bytesWritten: 12 * n },
  };
}
