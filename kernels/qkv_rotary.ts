// Generation's q, k, v from the attention's projections in one kernel: rotary on q and k (rotary.wgsl's rotation),
// k and v written straight into the KV cache; in place of split (or the head permutes), two rotary calls and two copies.
import { grid1d, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';
import { ROTARY_FLOPS_PER_PAIR, rotarySource } from './rotary.ts';

const QKV_ROTARY_INPUTS = ['q', 'k', 'v', 'invFreq', 'leftPadding'];

function qkvRotaryVariant(hasLeftPadding: boolean): Kernel {
  return {
    name: 'qkvRotary',
    ...rotarySource('qkv_rotary.wgsl', QKV_ROTARY_INPUTS, hasLeftPadding),
    inputs: QKV_ROTARY_INPUTS, outputs: ['qOut', 'kOut', 'vOut'],
    params: [['n', 'u32'], ['lanes', 'u32'], ['headDim', 'u32'], ['half', 'u32'], ['seqLen', 'u32'], ['positionOffset', 'u32'], ['heads', 'u32'], ['kvHeads', 'u32'], ['kvLength', 'u32'],
      ['qRowStride', 'u32'], ['kvRowStride', 'u32'], ['headStride', 'u32'], ['kOffset', 'u32'], ['vOffset', 'u32']],
    constants: ['WG'],
  };
}

export const qkvRotaryKernel = qkvRotaryVariant(false);
export const qkvRotaryLeftPaddingKernel = qkvRotaryVariant(true);

// WebGPU guarantees 256 invocations per workgroup on every device.
const WG = 256;

/** Where each token row's heads lie in the projection output(s), in elements (see qkv_rotary.wgsl). */
export interface QkvSource { qRowStride: number; kvRowStride: number; headStride: number; kOffset: number; vOffset: number }

/**
 * T = seqLen new tokens of `batch` rows: q [B, heads, T, D] out, k and v [B, kvHeads, kvLength, D] out at positions
 * positionOffset .. positionOffset + T - 1; `leftPadding` when a per-batch-row i32 [B] tensor shifts positions.
 */
export interface QkvRotaryLayout { batch: number; seqLen: number; heads: number; kvHeads: number; headDim: number; kvLength: number; leftPadding: boolean; source: QkvSource }

/**
 * The first `rotaryDims` dims of each q and k head rotated by position t + positionOffset (less the row's left
 * padding), as rotaryCall's; the same FLOPs per pair. Ledger name 'qkvRotary'.
 */
export function qkvRotaryCall(limits: DeviceLimits, layout: QkvRotaryLayout, rotaryDims: number, positionOffset: number): KernelCall {
  const { batch, seqLen, heads, kvHeads, headDim, kvLength, source } = layout;
  const tokens = batch * seqLen;
  const half = rotaryDims / 2;
  const lanes = headDim - half;
  const headRows = tokens * (heads + 2 * kvHeads);
  const pairs = tokens * (heads + kvHeads) * half;
  const n = headRows * lanes;
  return {
    kernel: layout.leftPadding ? qkvRotaryLeftPaddingKernel : qkvRotaryKernel, op: 'qkvRotary',
    constants: { WG },
    params: { n, lanes, headDim, half, seqLen, positionOffset, heads, kvHeads, kvLength, ...source },
    workgroups: grid1d(n, WG, limits),
    cost: { flops: ROTARY_FLOPS_PER_PAIR * pairs, bytesRead: 4 * headRows * headDim + 4 * pairs + (layout.leftPadding ? 4 * batch : 0), bytesWritten: 4 * headRows * headDim },
  };
}
