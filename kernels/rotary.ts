// Rotary position embedding (rotate-half) on [B, H, T, D], forward and inverse rotation.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

/** Per rotated pair, forward or inverse: the angle (1), range reduction (7), sin and cos series (~20) and the rotation (6). */
export const ROTARY_FLOPS_PER_PAIR = 34;

/**
 * The source of a kernel that rotates with rotary_rotation.wgsl, its entry point and other pieces in `includes`
 * (elementwise_main.wgsl by default): leftPadding is an optional input, declared at its index among `inputs` by the
 * variant with it; the variant without it neither declares nor binds it.
 */
export function rotarySource(file: string, inputs: readonly string[], hasLeftPadding: boolean, includes: readonly string[] = ['elementwise_main.wgsl']): Pick<Kernel, 'source' | 'absent'> {
  const shared = ['rotary_rotation.wgsl', ...includes];
  if (!hasLeftPadding) return { source: wgsl(import.meta.url, file, { includes: ['rotary_no_left_padding.wgsl', ...shared] }), absent: ['leftPadding'] };
  const placeholders = { LEFT_PADDING_BINDING: inputs.indexOf('leftPadding') };
  return { source: wgsl(import.meta.url, file, { includes: ['rotary_left_padding.wgsl', ...shared], placeholders }), absent: [] };
}

const ROTARY_INPUTS = ['x', 'invFreq', 'leftPadding'];

function rotaryVariant(hasLeftPadding: boolean): Kernel {
  return {
    name: 'rotary',
    ...rotarySource('rotary.wgsl', ROTARY_INPUTS, hasLeftPadding),
    inputs: ROTARY_INPUTS, outputs: ['out'],
    params: [['n', 'u32'], ['perThread', 'u32'], ['lanes', 'u32'], ['headDim', 'u32'], ['half', 'u32'], ['seqLen', 'u32'], ['positionOffset', 'u32'], ['rowsPerBatch', 'u32']],
    constants: ['WG', 'INVERSE'],
  };
}

export const rotaryKernel = rotaryVariant(false);
export const rotaryLeftPaddingKernel = rotaryVariant(true);

/** Largest angle (radians) whose range reduction in rotary.wgsl is exact: 2^16 · π/2, with margin for rounding. */
export const ROTARY_MAX_ANGLE = 102900;

/** Where x's rows sit: x [B, heads, seqLen, headDim]; `leftPadding` when a per-batch-row i32 [B] tensor shifts positions. */
export interface RotaryLayout { batch: number; heads: number; seqLen: number; headDim: number; leftPadding: boolean }

/**
 * Rotates x [rows = B·H·T, headDim] by position (row mod seqLen) + positionOffset, less the row's leftPadding
 * (clamped at 0) when given; the first `rotaryDims` dims rotate, the rest are copied. `inverse` rotates by
 * minus the angle (the backward). Ledger name 'rotary' or 'rotaryBackward'.
 */
export function rotaryCall(limits: DeviceLimits, layout: RotaryLayout, rotaryDims: number, positionOffset: number, inverse: boolean,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { batch, heads, seqLen, headDim } = layout;
  const rows = batch * heads * seqLen;
  const half = rotaryDims / 2;
  const lanes = headDim - half;
  const n = rows * lanes;
  const pairs = rows * half;
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: layout.leftPadding ? rotaryLeftPaddingKernel : rotaryKernel, op: inverse ? 'rotaryBackward' : 'rotary',
    constants: { ...constants, INVERSE: inverse ? 1 : 0 },
    params: { n, perThread, lanes, headDim, half, seqLen, positionOffset, rowsPerBatch: heads * seqLen },
    workgroups,
    cost: { flops: ROTARY_FLOPS_PER_PAIR * pairs, bytesRead: 4 * rows * headDim + 4 * pairs + (layout.leftPadding ? 4 * batch : 0), bytesWritten: 4 * rows * headDim },
  };
}
