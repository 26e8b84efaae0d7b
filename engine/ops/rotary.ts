// Rotary position embedding, rotate-half convention (transformers' GPT-NeoX, Llama, Mistral), with its backward.
import { record } from '../autodiff.ts';
import { GpuError, onGpuRelease } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { ROTARY_MAX_ANGLE, rotaryCall } from '../../kernels/rotary.ts';

export interface RotaryOptions {
  /** Leading dims of each head that rotate (even, <= D): D for Llama and Mistral, rotary_pct · D for GPT-NeoX. */
  rotaryDims: number;
  /** rope_theta: 10000 for Pythia and Mistral-7B. */
  base: number;
  /** Position of the first row: the tokens already in the KV cache. */
  positionOffset?: number;
  /**
   * i32 [B]: batch row b's positions count from its column leftPadding[b] (a left-padded batch of prompts of
   * different lengths, transformers' position_ids from the attention mask); the padding columns get position 0.
   */
  leftPadding?: Tensor;
}

/**
 * transformers' inv_freq = 1 / base^(arange(0, rd, 2) / rd), with every step rounded to f32 as torch computes it,
 * so that the angles pos · inv_freq match its float32 frequencies.
 */
export function inverseFrequencies(rotaryDims: number, base: number): Float32Array {
  const b = Math.fround(base);
  return Float32Array.from({ length: rotaryDims / 2 }, (_, i) => Math.fround(1 / Math.fround(b ** Math.fround((2 * i) / rotaryDims))));
}

/** One inv_freq table per (rotaryDims, base), kept on the GPU for the life of the process. */
const invFreqTables = new Map<string, Tensor>();
onGpuRelease(() => invFreqTables.clear());

function invFreqTable(rotaryDims: number, base: number): Tensor {
  const key = `${rotaryDims}:${base}`;
  let t = invFreqTables.get(key);
  if (!t) invFreqTables.set(key, (t = Tensor.fromArray(inverseFrequencies(rotaryDims, base), [rotaryDims / 2]).keep()));
  return t;
}

/** Rotates the first rotaryDims of each head of x [B, H, T, D] by its position t + positionOffset (- leftPadding[b]). */
export function rotary(x: Tensor, { rotaryDims, base, positionOffset = 0, leftPadding }: RotaryOptions): Tensor {
  const what = `rotary(x ${x.dtype} ${shapeString(x.shape)}, rotaryDims ${rotaryDims}, base ${base}, positionOffset ${positionOffset})`;
  if (x.dtype !== 'f32' || x.rank !== 4) throw new GpuError(`${what}: x must be f32 [B, H, T, D]`);
  const [batch, heads, seqLen, headDim] = x.shape;
  if (leftPadding && (leftPadding.dtype !== 'i32' || leftPadding.numel !== batch))
    throw new GpuError(`${what}: leftPadding must be i32 [${batch}], got ${leftPadding.dtype} ${shapeString(leftPadding.shape)}`);
  if (!Number.isInteger(rotaryDims) || rotaryDims < 2 || rotaryDims % 2 !== 0 || rotaryDims > headDim)
    throw new GpuError(`${what}: rotaryDims must be even, at least 2 and at most D = ${headDim}`);
  if (!(base > 1) || !Number.isFinite(base)) throw new GpuError(`${what}: base must be a finite number > 1`);
  if (!Number.isInteger(positionOffset) || positionOffset < 0) throw new GpuError(`${what}: positionOffset must be a non-negative integer`);
  // inv_freq[0] = 1, so the largest angle is the last position (padding only lowers positions).
  if (positionOffset + seqLen - 1 > ROTARY_MAX_ANGLE)
    throw new GpuError(`${what}: positions up to ${positionOffset + seqLen - 1} exceed ${ROTARY_MAX_ANGLE}, where the kernel's sin/cos range reduction stops being exact`);
  const layout = { batch, heads, seqLen, headDim, leftPadding: leftPadding !== undefined };
  const table = invFreqTable(rotaryDims, base);
  // Without padding the kernel's variant leaves the leftPadding binding out: null in its place.
  const padding = leftPadding ?? null;
  const out = Tensor.empty(x.shape, 'f32', 'rotary');
  launch(rotaryCall(deviceLimits(), layout, rotaryDims, positionOffset, false), [x, table, padding], [out]);
  // forward was out = R(angle) x, a rotation per pair, so dx = R(angle)ᵀ dy = R(-angle) dy.
  record('rotary', [x], [out], leftPadding ? [leftPadding] : [], ([dy]) => {
    const dx = Tensor.empty(x.shape, 'f32', 'rotaryBackward');
    launch(rotaryCall(deviceLimits(), layout, rotaryDims, positionOffset, true), [dy!, table, padding], [dx]);
    return [dx];
  });
  return out;
}
