// Causal self-attention over new tokens, with or without a KV cache of the earlier ones.
import { GpuError } from '../engine/gpu.ts';
import { Tensor } from '../engine/tensor.ts';
import { attention, attentionDecode } from '../engine/ops/attention.ts';
import { writeSlice } from '../engine/ops/shape.ts';

/**
 * One layer's keys and values for generation: k, v [B, KVH, maxLength, D], of which the first `length`
 * positions are filled. Written without the tape: generation does not train.
 */
export class KVCache {
  length = 0;
  readonly k: Tensor;
  readonly v: Tensor;

  constructor(batch: number, kvHeads: number, readonly maxLength: number, headDim: number) {
    this.k = Tensor.zeros([batch, kvHeads, maxLength, headDim]).keep();
    this.v = Tensor.zeros([batch, kvHeads, maxLength, headDim]).keep();
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

  dispose(): void { this.k.dispose(); this.v.dispose(); }
}

/**
 * Causal self-attention of T new tokens, q [B, H, T, D] and k, v [B, KVH, T, D] (rotary applied), window 0
 * for none: among themselves (training, scoring), or with a cache over every token so far, the new ones
 * at positions cache.length .. cache.length + T - 1. Returns [B, H, T, D].
 */
export function causalSelfAttention(q: Tensor, k: Tensor, v: Tensor, window: number, cache?: KVCache): Tensor {
  if (cache) {
    const prompt = cache.length === 0;
    cache.append(k, v);
    // A prompt sees only itself (the tiled kernel below); later tokens read the cache with the decode kernel.
    if (!prompt) return attentionDecode(q, cache.k, cache.v, { window, cacheLength: cache.length });
  }
  return attention(q, k, v, { causal: true, window });
}

