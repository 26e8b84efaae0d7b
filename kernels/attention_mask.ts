// The attention mask as its own kernel, for the composed attention: masked scores or gradients become a fill value.
import { grid1d, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';
import { attentionSource, MASK_PARAMS, maskParams, type AttentionMask } from './attention_forward.ts';

function maskKernel(hasKeyRange: boolean): Kernel {
  const inputs = ['x', 'keyRange'];
  return {
    name: 'attentionMask',
    ...attentionSource('attention_mask.wgsl', inputs, hasKeyRange, undefined, false),
    inputs,
    outputs: ['out'],
    params: [['n', 'u32'], ['T', 'u32'], ['S', 'u32'], ['rowsPerBatch', 'u32'], ...MASK_PARAMS],
    constants: ['FILL_BITS', 'WG'],
  };
}

export const attentionMaskKernel = maskKernel(false);
export const attentionMaskKeyRangeKernel = maskKernel(true);

const WG = 256;

/** Bits of the fill values: -inf (scores before the softmax) and 0 (probabilities, gradients). */
export const MASK_FILL = { negativeInfinity: 0xff800000, zero: 0 } as const;

/** x [B, KVH, G·T, S] with query row t = r % T; rowsPerBatch = KVH·G·T. */
export function attentionMaskCall(limits: DeviceLimits, n: number, T: number, S: number, rowsPerBatch: number, mask: AttentionMask, fillBits: number, op = 'attentionMask'): KernelCall {
  return {
    kernel: mask.hasKeyRange ? attentionMaskKeyRangeKernel : attentionMaskKernel,
    op,
    constants: { FILL_BITS: fillBits, WG },
    params: { n, T, S, rowsPerBatch, ...maskParams(mask) },
    workgroups: grid1d(n, WG, limits),
    cost: { flops: 0, bytesRead: 4 * n, bytesWritten: 4 * n },
  };
}
