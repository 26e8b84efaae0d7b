// f32 -> f16 storage (round to nearest even, overflow to ±inf): the f16 copies of weights and activations that
// mixed precision's products read. One word (two elements) per invocation; no FLOPs, only bytes.
import { ceilDiv, grid1d, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

export const castF16Kernel: Kernel = {
  name: 'castF16',
  source: wgsl(import.meta.url, 'cast_f16.wgsl'),
  inputs: ['x'], outputs: ['out'], params: [['n', 'u32']], constants: ['WG'],
};

const WG = 256;

/** n f32 elements into ceil(n / 2) words of f16 pairs. */
export function castF16Call(limits: DeviceLimits, n: number, op = 'castF16'): KernelCall {
  const words = ceilDiv(n, 2);
  return {
    kernel: castF16Kernel, op, constants: { WG }, params: { n },
    workgroups: grid1d(words, WG, limits),
    cost: { flops: 0, bytesRead: 4 * n, bytesWritten: 4 * words },
  };
}
