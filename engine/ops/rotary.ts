// Rotary position embedding, rotate-half convention (transformers' GPT-NeoX, Llama, Mistral), with its backward.
import { gradEnabled, record } from '../autodiff.ts';
import { GpuError, onGpuRelease } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { ROTARY_MAX_ANGLE, rotaryCall } from '../../kernels/rotary.ts';
import { qkvRotaryCall, type QkvRotaryLayout, type QkvSource } from '../../kernels/qkv_rotary.ts';

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

/** Checks the options of T = seqLen positions of rows of headDim dims in `batch` batch rows (`what` names the call). */
function checkRotary(what: string, batch: number, seqLen: number, headDim: number, { rotaryDims, base, positionOffset = 0, leftPadding }: RotaryOptions): void {
  if (leftPadding && (leftPadding.dtype !== 'i32' || leftPadding.numel !== batch))
    throw new GpuError(`${what}: leftPadding must be i32 [${batch}], got ${leftPadding.dtype} ${shapeString(leftPadding.shape)}`);
  if (!Number.isInteger(rotaryDims) || rotaryDims < 2 || rotaryDims % 2 !== 0 || rotaryDims > headDim)
    throw new GpuError(`${what}: rotaryDims must be even, at least 2 and at most D = ${headDim}`);
  if (!(base > 1) || !Number.isFinite(base)) throw new GpuError(`${what}: base must be a finite number > 1`);
  if (!Number.isInteger(positionOffset) || positionOffset < 0) throw new GpuError(`${what}: positionOffset must be a non-negative integer`);
  // inv_freq[0] = 1, so the largest angle is the last position (padding only lowers positions).
  if (positionOffset + seqLen - 1 > ROTARY_MAX_ANGLE)
    throw new GpuError(`${what}: positions up to ${positionOffset + seqLen - 1} exceed ${ROTARY_MAX_ANGLE}, where the kernel's sin/cos range reduction stops being exact`);
}

/** Rotates the first rotaryDims of each head of x [B, H, T, D] by its position t + positionOffset (- leftPadding[b]). */
export function rotary(x: Tensor, opts: RotaryOptions): Tensor {
  const { rotaryDims, base, positionOffset = 0, leftPadding } = opts;
  const what = `rotary(x ${x.dtype} ${shapeString(x.shape)}, rotaryDims ${rotaryDims}, base ${base}, positionOffset ${positionOffset})`;
  if (x.dtype !== 'f32' || x.rank !== 4) throw new GpuError(`${what}: x must be f32 [B, H, T, D]`);
  const [batch, heads, seqLen, headDim] = x.shape;
  checkRotary(what, batch, seqLen, headDim, opts);
  const layout = { batch, heads, seqLen, headDim, leftPadding: leftPadding !== undefined };
  const table = invFreqTable(rotaryDims, base);
  // Without padding the kernel's variant leaves the leftPadding binding out: null in its place.
  const padding = leftPadding ?? null;
  const out = Tensor.empty(x.shape, 'f32', 'rotary');
  launch(rotaryCall(deviceLimits(), layout, rotaryDims, positionOffset, false, elementwiseShape()), [x, table, padding], [out]);
  // forward was out = R(angle) x, a rotation per pair, so dx = R(angle)ᵀ dy = R(-angle) dy.
  record('rotary', [x], [out], leftPadding ? [leftPadding] : [], ([dy]) => {
    const dx = Tensor.empty(x.shape, 'f32', 'rotaryBackward');
    launch(rotaryCall(deviceLimits(), layout, rotaryDims, positionOffset, true, elementwiseShape()), [dy!, table, padding], [dx]);
    return [dx];
  });
  return out;
}

/**
 * The attention's projections of T new tokens as the Linear(s) write them: GPT-NeoX's query_key_value
 * [B, T, H·3·D] (each head's q, k and v rows together), or q [B, T, H·D], k and v [B, T, KVH·D] (Llama, Mistral),
 * or those three side by side, [B, T, H·D + 2·KVH·D] along the last dim ([q | k | v]: decoding's grouped product,
 * engine/ops/matmul.ts linearGroup).
 */
export type QkvProjections = { qkv: Tensor } | { q: Tensor; k: Tensor; v: Tensor } | { concatenated: Tensor };

/** The one tensor or the three of the projections, in binding order. */
export function projectionTensors(proj: QkvProjections): Tensor[] {
  return 'qkv' in proj ? [proj.qkv] : 'concatenated' in proj ? [proj.concatenated] : [proj.q, proj.k, proj.v];
}

/** Heads of q, heads of k and v (fewer under grouped-query attention), and the head dim. */
export interface QkvHeads { heads: number; kvHeads: number; headDim: number }

/** The projections of T tokens as qkvRotary's kernel reads them, checked (kvLength: k's and v's positions). */
function qkvLayout(what: string, proj: QkvProjections, { heads, kvHeads, headDim }: QkvHeads, kvLength: number, opts: RotaryOptions): { layout: QkvRotaryLayout; projections: Tensor[] } {
  const packed = 'qkv' in proj;
  const projections = projectionTensors(proj);
  if (packed && kvHeads !== heads) throw new GpuError(`${what}: a packed query_key_value has as many kv heads as heads`);
  const [batch, seqLen] = projections[0].shape;
  const [H, KVH, D] = [heads, kvHeads, headDim];
  const row = (H + 2 * KVH) * D; // a token's q | k | v
  const widths = packed ? [3 * H * D] : 'concatenated' in proj ? [row] : [H * D, KVH * D, KVH * D];
  projections.forEach((t, i) => {
    if (t.dtype !== 'f32' || t.shape.join() !== [batch, seqLen, widths[i]].join()) throw new GpuError(`${what}: the projections must be f32 [B, T, ${widths.join('], [B, T, ')}]`);
  });
  checkRotary(what, batch, seqLen, headDim, opts);
  const source: QkvSource = packed
    ? { qRowStride: 3 * H * D, kvRowStride: 3 * H * D, headStride: 3 * D, kOffset: D, vOffset: 2 * D }
    : 'concatenated' in proj
      ? { qRowStride: row, kvRowStride: row, headStride: D, kOffset: H * D, vOffset: (H + KVH) * D }
      : { qRowStride: H * D, kvRowStride: KVH * D, headStride: D, kOffset: 0, vOffset: 0 };
  const layout = { batch, seqLen, heads, kvHeads, headDim, kvLength, leftPadding: opts.leftPadding !== undefined, oneProjection: projections.length === 1, source };
  return { layout, projections };
}

/** q [B, H, T, D] rotated out, k rotated and v into kOut, vOut at positions positionOffset .. positionOffset + T - 1. */
function launchQkvRotary(layout: QkvRotaryLayout, projections: Tensor[], kOut: Tensor, vOut: Tensor, opts: RotaryOptions): Tensor {
  const { batch, heads, seqLen, headDim } = layout;
  const q = Tensor.empty([batch, heads, seqLen, headDim], 'f32', 'qkvRotary q');
  // A packed or concatenated projection is bound as q, k and v alike; without padding the leftPadding binding is null.
  const sources = projections.length === 1 ? [projections[0], projections[0], projections[0]] : projections;
  launch(qkvRotaryCall(deviceLimits(), layout, opts.rotaryDims, opts.positionOffset ?? 0, false, elementwiseShape()), [...sources, invFreqTable(opts.rotaryDims, opts.base), opts.leftPadding ?? null], [q, kOut, vOut]);
  return q;
}

/**
 * Generation, off the tape, in one kernel: returns q [B, H, T, D] rotated, and writes k rotated and v as they are
 * into kOut, vOut [B, KVH, S, D] at positions positionOffset .. positionOffset + T - 1 (a KV cache's, or S = T for
 * the prompt's own keys). The same values, bit for bit, as split (or the head permutes), rotary on q and on k,
 * then k and v copied there.
 */
export function qkvRotary(proj: QkvProjections, heads: QkvHeads, kOut: Tensor, vOut: Tensor, opts: RotaryOptions): Tensor {
  const { positionOffset = 0 } = opts;
  const given = projectionTensors(proj).map((t) => `${t.dtype} ${shapeString(t.shape)}`).join(', ');
  const what = `qkvRotary(${given} -> k ${shapeString(kOut.shape)}, v ${shapeString(vOut.shape)}; heads ${heads.heads}, kvHeads ${heads.kvHeads}, rotaryDims ${opts.rotaryDims}, positionOffset ${positionOffset})`;
  if (gradEnabled()) throw new GpuError(`${what}: generation only, it has no backward: run under noGrad (rotaryHeads records one)`);
  const kvLength = kOut.shape[2];
  const { layout, projections } = qkvLayout(what, proj, heads, kvLength, opts);
  const { batch, seqLen, kvHeads, headDim } = layout;
  for (const t of [kOut, vOut]) {
    if (t.dtype !== 'f32' || t.shape.join() !== [batch, kvHeads, kvLength, headDim].join()) throw new GpuError(`${what}: k and v must be f32 [${batch}, ${kvHeads}, S, ${headDim}], alike`);
  }
  if (positionOffset + seqLen > kvLength) throw new GpuError(`${what}: positions up to ${positionOffset + seqLen - 1} do not fit k and v's ${kvLength}`);
  return launchQkvRotary(layout, projections, kOut, vOut, opts);
}

/**
 * The attention's inputs from the projections of T tokens without a cache (training, scoring), on the tape: q
 * [B, H, T, D] and k [B, KVH, T, D] rotated, v [B, KVH, T, D], in qkvRotary's one kernel; its backward writes the
 * projections' gradient whole in one more (qkv_rotary_backward.wgsl: no fill, no scatter, no separate rotations).
 * The same bits both ways as split (or the head permutes) and rotary on q and on k. Positions count from 0.
 */
export function rotaryHeads(proj: QkvProjections, heads: QkvHeads, opts: RotaryOptions): [Tensor, Tensor, Tensor] {
  const given = projectionTensors(proj).map((t) => `${t.dtype} ${shapeString(t.shape)}`).join(', ');
  const what = `rotaryHeads(${given}; heads ${heads.heads}, kvHeads ${heads.kvHeads}, rotaryDims ${opts.rotaryDims})`;
  if ((opts.positionOffset ?? 0) !== 0) throw new GpuError(`${what}: positionOffset ${opts.positionOffset}: without a cache positions count from 0`);
  const seqLen = projectionTensors(proj)[0].shape[1];
  const { layout, projections } = qkvLayout(what, proj, heads, seqLen, opts);
  const { batch, kvHeads, headDim } = layout;
  const k = Tensor.empty([batch, kvHeads, seqLen, headDim], 'f32', 'rotaryHeads k'), v = Tensor.empty(k.shape, 'f32', 'rotaryHeads v');
  const q = launchQkvRotary(layout, projections, k, v, opts);
  const { leftPadding } = opts;
  record('qkvRotary', projections, [q, k, v], leftPadding ? [leftPadding] : [], (gs) => {
    // An output no gradient reached contributes zeros.
    const [dq, dk, dv] = gs.map((g, i) => g ?? Tensor.zeros([q, k, v][i].shape));
    const grads = projections.map((t) => Tensor.empty(t.shape, 'f32', 'qkvRotaryBackward'));
    launch(qkvRotaryCall(deviceLimits(), layout, opts.rotaryDims, 0, true, elementwiseShape()), [dq!, dk!, dv!, invFreqTable(opts.rotaryDims, opts.base), leftPadding ?? null],
      [grads[0], grads[1] ?? null, grads[2] ?? null]);
    return grads;
  });
  return [q, k, v];
}
