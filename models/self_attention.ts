// Causal self-attention over new tokens from their projections (rotary applied), with or without a KV cache of the earlier ones.
import { GpuError } from '../engine/gpu.ts';
import { Tensor } from '../engine/tensor.ts';
import { attention, attentionDecode } from '../engine/ops/attention.ts';
import { projectionTensors, qkvRotary, rotary, rotaryHeads, type QkvHeads, type QkvProjections, type RotaryOptions } from '../engine/ops/rotary.ts';
import { cacheRowIds, gatherRows, permute, reshape, split, writeSlice } from '../engine/ops/shape.ts';

/**
 * One layer's keys and values for generation: k, v [B, KVH, maxLength, D], of which the first `length`
 * positions are filled. Written without the tape: generation does not train.
 *
 * A batch of prompts of different lengths is left-padded: batch row b's first padLengths[b] columns are
 * padding, which no query sees (keyRange) and from which no position counts (leftPadding, for rotary).
 *
 * `fusedRotary` (the default): each step forms q and writes k and v into the cache in one kernel from the
 * projections (qkvRotary), and a model may group a step's products where they allow it (Mistral's q, k, v in one
 * product and gate, up and SwiGLU in another: engine/ops/matmul.ts linearGroup); false: the composed ops (split or
 * the head permutes, rotary on q and on k, two copies) and separate products, the reference it equals bit for bit.
 */
export class KVCache {
  length = 0;
  readonly k: Tensor;
  readonly v: Tensor;
  /** i32 [B]: each row's padding columns; absent when no row is padded. */
  readonly leftPadding?: Tensor;
  /** i32 [B, 2]: each row's valid keys [padLength, maxLength); absent when no row is padded. */
  readonly keyRange?: Tensor;
  /** Each row's padding columns, on the host. */
  readonly padLengths: readonly number[];

  /** k and v: the cache's tensors [batch, kvHeads, maxLength, headDim] where given (kept), zeros otherwise. */
  constructor(batch: number, kvHeads: number, readonly maxLength: number, headDim: number, padLengths?: readonly number[], readonly fusedRotary = true, kv?: { k: Tensor; v: Tensor }) {
    if (padLengths && (padLengths.length !== batch || padLengths.some((p) => !Number.isInteger(p) || p < 0 || p >= maxLength)))
      throw new GpuError(`KVCache: padLengths [${padLengths}] must be ${batch} integers in [0, ${maxLength})`);
    const shape = [batch, kvHeads, maxLength, headDim];
    if (kv && (kv.k.shape.join() !== shape.join() || kv.v.shape.join() !== shape.join())) throw new GpuError(`KVCache: k [${kv.k.shape}] and v [${kv.v.shape}] must be [${shape}]`);
    this.k = (kv?.k ?? Tensor.zeros(shape)).keep();
    this.v = (kv?.v ?? Tensor.zeros(shape)).keep();
    this.padLengths = padLengths ? [...padLengths] : new Array<number>(batch).fill(0);
    if (padLengths?.some((p) => p > 0)) {
      this.leftPadding = Tensor.fromArray(padLengths, [batch], 'i32').keep();
      this.keyRange = Tensor.fromArray(padLengths.flatMap((p) => [p, maxLength]), [batch, 2], 'i32').keep();
    }
  }

  /** Writes k, v [B, KVH, T, D] of T new tokens at positions length .. length + T - 1. */
  append(k: Tensor, v: Tensor): void {
    const [B, KVH, , D] = this.k.shape;
    const T = k.shape[2];
    if (k.shape.join() !== [B, KVH, T, D].join() || v.shape.join() !== k.shape.join())
      throw new GpuError(`KVCache.append: k [${k.shape}] and v [${v.shape}] must be [${B}, ${KVH}, T, ${D}]`);
    this.appendInPlace(T, (at) => {
      writeSlice(this.k, k, 2, at);
      writeSlice(this.v, v, 2, at);
    });
  }

  /** Appends T new tokens whose k and v write(at) puts into this.k, this.v at positions at .. at + T - 1 itself; returns what write returns. */
  appendInPlace<R>(T: number, write: (at: number) => R): R {
    if (this.length + T > this.maxLength) throw new GpuError(`KVCache.append: ${this.length} + ${T} positions exceed the cache's ${this.maxLength}`);
    const written = write(this.length);
    this.length += T;
    return written;
  }

  /**
   * New caches, one a layer, of the given rows of each part's caches, part after part: every row's filled columns
   * right-aligned at the longest row's (the padding no row needs is dropped), and `room` columns after them; a batch
   * without its finished rows, and with the prompts that join it (CausalLM.generate). A row's positions count from its
   * first real column, so moving its columns changes no position. One gather a part and tensor (gatherRows, the
   * cache's rows of D values as a table's, one list of ids a part, built on the device: cacheRowIds), the first
   * writing zeros where no filled column goes (padding, room).
   */
  static joined(parts: readonly { layers: readonly KVCache[]; rows: readonly number[] }[], room: number): KVCache[] {
    const [first] = parts;
    if (!first || first.layers.length === 0) throw new GpuError('KVCache.joined: needs a part of one layer at least');
    const [, KVH, , D] = first.layers[0].k.shape;
    for (const { layers, rows } of parts) {
      if (layers.length !== first.layers.length) throw new GpuError(`KVCache.joined: parts of ${layers.length} and ${first.layers.length} layers`);
      for (const c of layers) {
        if (c.k.shape[1] !== KVH || c.k.shape[3] !== D || c.fusedRotary !== first.layers[0].fusedRotary || c.length !== layers[0].length || c.maxLength !== layers[0].maxLength)
          throw new GpuError(`KVCache.joined: caches [${c.k.shape}] (${c.length} filled) and [${first.layers[0].k.shape}] differ in heads, head dim, rotary path, or within a part in length`);
      }
      const B = layers[0].k.shape[0];
      if (rows.some((r) => !Number.isInteger(r) || r < 0 || r >= B)) throw new GpuError(`KVCache.joined: rows [${rows}] must be some of [0, ${B})`);
    }
    const filled = parts.flatMap(({ layers: [c], rows }) => rows.map((r) => c.length - c.padLengths[r]));
    if (filled.length === 0 || !(Number.isInteger(room) && room >= 0)) throw new GpuError(`KVCache.joined: needs a row and room >= 0 (rows ${filled.length}, room ${room})`);
    const length = Math.max(...filled), S = length + room, B = filled.length;
    const out = first.layers.map(() => new KVCache(B, KVH, S, D, filled.map((n) => length - n), first.layers[0].fusedRotary,
      { k: Tensor.empty([B, KVH, S, D], 'f32', 'kv cache k'), v: Tensor.empty([B, KVH, S, D], 'f32', 'kv cache v') }));
    let at = 0, zeroed = false;
    for (const { layers, rows } of parts) {
      if (rows.length === 0) continue;
      const c = layers[0];
      const ids = cacheRowIds({ rows: B, heads: KVH, columns: S, length, srcColumns: c.maxLength, srcFilled: c.length, at }, rows, rows.map((r) => c.padLengths[r]));
      const moved = KVH * rows.reduce((n, r) => n + c.length - c.padLengths[r], 0);
      gatherRows(layers.flatMap((layer, l) => [{ dst: out[l].k, x: layer.k }, { dst: out[l].v, x: layer.v }]), ids, D, moved, !zeroed);
      ids.dispose();
      zeroed = true;
      at += rows.length;
    }
    for (const layer of out) layer.length = length;
    return out;
  }

  dispose(): void {
    for (const t of [this.k, this.v, this.leftPadding, this.keyRange]) t?.dispose();
  }
}

/** What the attention reads of a config: head counts and size, and its rotary embedding (rope_theta as `ropeTheta`). */
export interface AttentionHeads extends QkvHeads { rotaryDims: number; ropeTheta: number }

/**
 * Causal self-attention of T new tokens from their projections (QkvProjections), window 0 for none: q and k
 * rotated by position (the first rotaryDims of each head), then among themselves (training, scoring: rotaryHeads,
 * one kernel each way), or with a cache over every token so far, the new ones at positions cache.length ..
 * cache.length + T - 1, padding hidden and each row's positions counted from its first real token (left padding
 * shifts a row's tokens and its keys alike, so a window's distances need no correction). Returns [B, H, T, D].
 */
export function rotarySelfAttention(cfg: AttentionHeads, proj: QkvProjections, window: number, cache?: KVCache): Tensor {
  const rope: RotaryOptions = { rotaryDims: cfg.rotaryDims, base: cfg.ropeTheta, positionOffset: cache?.length ?? 0, leftPadding: cache?.leftPadding };
  if (!cache) {
    const [q, k, v] = rotaryHeads(proj, cfg, rope);
    return attention(q, k, v, { causal: true, window });
  }
  if (!cache.fusedRotary) {
    const [q, k, v] = heads(cfg, proj);
    return causalSelfAttention(rotary(q, rope), rotary(k, rope), v, window, cache);
  }
  const [B, T] = projectionTensors(proj)[0].shape;
  if (cache.length === 0) {
    // The prompt sees only itself: its keys beside q for the tiled kernel, then copied into the cache.
    const k = Tensor.empty([B, cfg.kvHeads, T, cfg.headDim], 'f32', 'prompt k'), v = Tensor.empty(k.shape, 'f32', 'prompt v');
    return causalSelfAttention(qkvRotary(proj, cfg, k, v, rope), k, v, window, cache);
  }
  const q = cache.appendInPlace(T, () => qkvRotary(proj, cfg, cache.k, cache.v, rope));
  return cachedAttention(q, window, cache);
}

/** The projections as heads: q [B, H, T, D], k and v [B, KVH, T, D]. */
function heads({ heads: H, kvHeads: KVH, headDim: D }: QkvHeads, proj: QkvProjections): Tensor[] {
  if ('qkv' in proj) {
    const [B, T] = proj.qkv.shape;
    // query_key_value's rows are grouped per head: [head][q, k, v][D].
    return split(reshape(proj.qkv, [B, T, H, 3 * D]), 3, [D, D, D], [0, 2, 1, 3]);
  }
  const [q, k, v] = 'concatenated' in proj ? split(proj.concatenated, 2, [H * D, KVH * D, KVH * D]) : [proj.q, proj.k, proj.v];
  const [B, T] = q.shape;
  const toHeads = (t: Tensor, n: number) => permute(reshape(t, [B, T, n, D]), [0, 2, 1, 3]);
  return [toHeads(q, H), toHeads(k, KVH), toHeads(v, KVH)];
}

/** q [B, H, T, D] and k, v [B, KVH, T, D] rotated, appended to the cache and attending with it. */
function causalSelfAttention(q: Tensor, k: Tensor, v: Tensor, window: number, cache: KVCache): Tensor {
  const prompt = cache.length === 0;
  cache.append(k, v);
  // A prompt sees only itself (the tiled kernel); later tokens read the cache with the decode kernel.
  if (prompt) return attention(q, k, v, { causal: true, window, keyRange: cache.keyRange });
  return cachedAttention(q, window, cache);
}

/** q of the cache's last T tokens against every key it holds. */
function cachedAttention(q: Tensor, window: number, cache: KVCache): Tensor {
  return attentionDecode(q, cache.k, cache.v, { window, cacheLength: cache.length, keyRange: cache.keyRange });
}
