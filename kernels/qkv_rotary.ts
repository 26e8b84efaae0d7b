// The attention's q, k, v from its projections in one kernel, and the projections' gradient in one more: rotary on q
// and k (rotary.wgsl's rotation), k and v written where the caller says (a KV cache, or their own tensors); in place
// of split (or the head permutes), two rotary calls and two copies, and of their backwards.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';
import { ROTARY_FLOPS_PER_PAIR, rotarySource } from './rotary.ts';

const QKV_ROTARY_INPUTS = ['q', 'k', 'v', 'invFreq', 'leftPadding'];
const QKV_ROTARY_PARAMS: Kernel['params'] = [['n', 'u32'], ['perThread', 'u32'], ['lanes', 'u32'], ['headDim', 'u32'], ['half', 'u32'], ['seqLen', 'u32'], ['positionOffset', 'u32'],
  ['heads', 'u32'], ['kvHeads', 'u32'], ['kvLength', 'u32'], ['qRowStride', 'u32'], ['kvRowStride', 'u32'], ['headStride', 'u32'], ['kOffset', 'u32'], ['vOffset', 'u32']];

function qkvRotaryVariant(hasLeftPadding: boolean): Kernel {
  return {
    name: 'qkvRotary',
    ...rotarySource('qkv_rotary.wgsl', QKV_ROTARY_INPUTS, hasLeftPadding, ['qkv_rotary_layout.wgsl']),
    inputs: QKV_ROTARY_INPUTS, outputs: ['qOut', 'kOut', 'vOut'], params: QKV_ROTARY_PARAMS, constants: ['WG'],
  };
}

export const qkvRotaryKernel = qkvRotaryVariant(false);
export const qkvRotaryLeftPaddingKernel = qkvRotaryVariant(true);

const QKV_ROTARY_BACKWARD_INPUTS = ['dqOut', 'dkOut', 'dvOut', 'invFreq', 'leftPadding'];

/** The backward into one projection tensor (the forward bound it as q, k and v: dk and dv are left out) or three. */
function qkvRotaryBackwardVariant(hasLeftPadding: boolean, oneProjection: boolean): Kernel {
  const { source, absent = [] } = rotarySource('qkv_rotary_backward.wgsl', QKV_ROTARY_BACKWARD_INPUTS, hasLeftPadding,
    ['qkv_rotary_layout.wgsl', oneProjection ? 'qkv_rotary_backward_one.wgsl' : 'qkv_rotary_backward_three.wgsl']);
  return {
    name: 'qkvRotaryBackward', source, absent: [...absent, ...(oneProjection ? ['dk', 'dv'] : [])],
    inputs: QKV_ROTARY_BACKWARD_INPUTS, outputs: ['dq', 'dk', 'dv'], params: QKV_ROTARY_PARAMS, constants: ['WG'],
  };
}

const qkvRotaryBackwardKernels = [false, true].map((padding) => [false, true].map((one) => qkvRotaryBackwardVariant(padding, one)));

/** Where each token row's heads lie in the projection output(s), in elements (see qkv_rotary_layout.wgsl). */
export interface QkvSource { qRowStride: number; kvRowStride: number; headStride: number; kOffset: number; vOffset: number }

/**
 * T = seqLen new tokens of `batch` rows: q [B, heads, T, D] out, k and v [B, kvHeads, kvLength, D] out at positions
 * positionOffset .. positionOffset + T - 1; `leftPadding` when a per-batch-row i32 [B] tensor shifts positions;
 * `oneProjection` when the projections are one tensor (packed, or q | k | v).
 */
export interface QkvRotaryLayout { batch: number; seqLen: number; heads: number; kvHeads: number; headDim: number; kvLength: number; leftPadding: boolean; oneProjection: boolean; source: QkvSource }

/**
 * The first `rotaryDims` dims of each q and k head rotated by position t + positionOffset (less the row's left
 * padding), as rotaryCall's, forward or (`backward`) the projections' gradient; the same FLOPs per pair as rotary and
 * its backward. Ledger name 'qkvRotary' or 'qkvRotaryBackward'.
 */
export function qkvRotaryCall(limits: DeviceLimits, layout: QkvRotaryLayout, rotaryDims: number, positionOffset: number, backward = false,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { batch, seqLen, heads, kvHeads, headDim, kvLength, source } = layout;
  const tokens = batch * seqLen;
  const half = rotaryDims / 2;
  const lanes = headDim - half;
  const headRows = tokens * (heads + 2 * kvHeads);
  const pairs = tokens * (heads + kvHeads) * half;
  const n = headRows * lanes;
  const kernel = backward ? qkvRotaryBackwardKernels[+layout.leftPadding][+layout.oneProjection] : layout.leftPadding ? qkvRotaryLeftPaddingKernel : qkvRotaryKernel;
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel, op: kernel.name,
    constants,
    params: { n, perThread, lanes, headDim, half, seqLen, positionOffset, heads, kvHeads, kvLength, ...source },
    workgroups,
    cost: { flops: ROTARY_FLOPS_PER_PAIR * pairs, bytesRead: 4 * headRows * headDim + 4 * pairs + (layout.leftPadding ? 4 * batch : 0), bytesWritten: 4 * headRows * headDim },
  };
}
