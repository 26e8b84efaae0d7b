// Causal self-attention over new tokens, with or without a KV cache of the earlier ones.
import { GpuError } from '../engine/gpu.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { attention, attentionDecode } from '../engine/ops/attention.ts';
import type { RotaryOptions } from '../engine/ops/rotary.ts';
import { narrow, writeSlice } from '../engine/ops/shape.ts';

/**
 * One layer's keys and values for generation: k, v [B, KVH, maxLength, D], of which the first `length`
 * positions are filled. Written without the tape: generation does not train.
 *
 * A batch of prompts of different lengths is left-padded: batch row b's first padLengths[b] columns are
 * padding, which no query sees (keyRange) and from which no position counts (leftPadding, for rotary).
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

  constructor(batch: number, kvHeads: number, readonly maxLength: number, headDim: number, padLengths?: readonly number[]) {
    if (padLengths && (padLengths.length !== batch || padLengths.some((p) => !Number.isInteger(p) || p < 0 || p >= maxLength)))
      throw new GpuError(`KVCache: padLengths [${padLengths}] must be ${batch} integers in [0, ${maxLength})`);
    this.k = Tensor.zeros([batch, kvHeads, maxLength, headDim]).keep();
    this.v = Tensor.zeros([batch, kvHeads, maxLength, headDim]).keep();
    this.padLengths = padLengths ? [...padLengths] : new Array<number>(batch).fill(0);
    if (padLengths?.some((p) => p > 0)) {
      this.leftPadding = Tensor.fromArray(padLengths, [batch], 'i32').keep();
      this.keyRange = Tensor.fromArray(padLengths.flatMap((p) => [p, maxLength]), [batch, 2], 'i32').keep();
    }
  }

  /** Writes k, v [B, KVH, T, D] of T new tokens at positions length .. length + T - 1. */
  append(k: Tensor, v: Tensor): void {
    const [B, KVH, maxLength, D] = this.k.shape;
    const T = k.shape[2];
    if (k.shape.join() !== [B, KVH, T, D].join() || v.shape.join() !== k.shape.join())
      throw new GpuError(`KVCache.append: k [${k.shape}] and v [${v.shape}] must be [${B}, ${KVH}, T, ${D}]`);
    if (this.length + T > maxLength) throw new GpuError(`KVCache.append: ${this.length} + ${T} positions exceed the cache's ${maxLength}`);
    writeSlice(this.k, k, 2, this.length);
    writeSlice(this.v, v, 2, this.length);
    this.length += T;
  }

  /**
   * A new cache of the given rows of this one, in that order, with the same positions filled (a batch without
   * its finished rows). Copies each run of consecutive rows at once: two strided copies of [n, KVH, maxLength, D].
   */
  selectRows(rows: readonly number[]): KVCache {
    const [B, KVH, maxLength, D] = this.k.shape;
    if (rows.length === 0 || rows.some((r) => !Number.isInteger(r) || r < 0 || r >= B)) throw new GpuError(`KVCache.selectRows: rows [${rows}] must be some of [0, ${B})`);
    const out = new KVCache(rows.length, KVH, maxLength, D, rows.map((r) => this.padLengths[r]));
    out.length = this.length;
    for (let j = 0, n = 1; j < rows.length; j += n, n = 1) {
      while (j + n < rows.length && rows[j + n] === rows[j] + n) n++;
      tidy(() => {
        writeSlice(out.k, narrow(this.k, 0, rows[j], n), 0, j);
        writeSlice(out.v, narrow(this.v, 0, rows[j], n), 0, j);
      });
    }
    return out;
  }

  dispose(): void {
    for (const t of [this.k, this.v, this.leftPadding, this.keyRange]) t?.dispose();
  }
}

/** Rotary positions of T new tokens: after the cached ones, each row counted from its first real token. */
export function rotaryPositions(cache?: KVCache): Pick<RotaryOptions, 'positionOffset' | 'leftPadding'> {
  return { positionOffset: cache?.length ?? 0, leftPadding: cache?.leftPadding };
}

/**
 * Causal self-attention of T new tokens, q [B, H, T, D] and k, v [B, KVH, T, D] (rotary applied), window 0
 * for none: among themselves (training, scoring), or with a cache over every token so far, the new ones
 * at positions cache.length .. cache.length + T - 1, padding hidden. Returns [B, H, T, D].
 */
export function causalSelfAttention(q: Tensor, k: Tensor, v: Tensor, window: number, cache?: KVCache): Tensor {
  if (!cache) return attention(q, k, v, { causal: true, window });
  const prompt = cache.length === 0;
  cache.append(k, v);
  // Left padding shifts a row's tokens and its keys alike, so the window's distances need no correction.
  const keyRange = cache.keyRange;
  // A prompt sees only itself (the tiled kernel); later tokens read the cache with the decode kernel.
  if (prompt) return attention(q, k, v, { causal: true, window, keyRange });
  return attentionDecode(q, cache.k, cache.v, { window, cacheLength: cache.length, keyRange });
}
