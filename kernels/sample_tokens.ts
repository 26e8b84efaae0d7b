// The next token of each row of logits on the GPU (greedy, or temperature, top-k, top-p and one seeded draw):
// generation reads back B token ids per step instead of B×V logits. The algorithm is in sample_tokens.wgsl.
import { grid1d, KernelError, loadWgsl, nextPowerOfTwo, reductionWorkgroupSize, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

export const sampleTokensKernel: Kernel = {
  name: 'sampleTokens', source: loadWgsl(import.meta.url, 'sample_tokens.wgsl'),
  inputs: ['logits', 'rowCounters'], outputs: ['ids'],
  params: [['rows', 'u32'], ['V', 'u32'], ['temperature', 'f32'], ['topK', 'u32'], ['topP', 'f32'], ['seed', 'u32'], ['step', 'u32']],
  constants: ['WG'],
};

/** How a row's token is chosen: temperature 0 is greedy; topK 0 and topP 1 keep every token. */
export interface TokenSampling { temperature: number; topK: number; topP: number; seed: number; step: number }

/** Counts are summed in f32, exact below 2^24. */
const MAX_VOCAB = 2 ** 24;
/** Bisection steps over the 2^32 order keys of f32, at most: a bisection stops early once one logit is left. */
const BISECTION_PASSES = 32;

/**
 * Passes over a row's V logits, an upper bound: the max (1, all that greedy costs); top-k's bisection (at most
 * 32, when 0 < topK < V); with top-p the survivors' mass (1), its bisection (at most 32) and the tie count at
 * the cut-off (1); the chunk sums (1). The chosen chunk's re-scan (V / WG logits) is left out. A bisection pass
 * computes a count and a weight, so both are weighted passes.
 */
export function sampleTokensPasses(V: number, s: Omit<TokenSampling, 'seed' | 'step'>): { counting: number; weighted: number } {
  if (s.temperature === 0) return { counting: 1, weighted: 0 };
  const topK = s.topK > 0 && s.topK < V, topP = s.topP < 1;
  return { counting: 1 + (topP ? 1 : 0), weighted: 1 + (topK ? BISECTION_PASSES : 0) + (topP ? 1 + BISECTION_PASSES : 0) };
}

/**
 * Threads per row: 16 logits or more each (every pass ends in a tree of barriers, so fewer threads over more
 * logits win until a row's loads dominate), at least 32 (a warp) or the row's length, at most 256.
 */
export function sampleTokensWorkgroupSize(limits: DeviceLimits, V: number): number {
  // Per thread an f32 and a u32 (argmax, chunk sums) and a vec2f (count, mass); the draw's scalars and a vec2f.
  return reductionWorkgroupSize(limits, 16, 20, Math.min(256, Math.max(Math.min(32, nextPowerOfTwo(V)), nextPowerOfTwo(V / 16))));
}

/** ids i32 [rows] from logits f32 [rows, V] and the rows' counters i32 [rows, 2] (row id, first step): one workgroup per row. */
export function sampleTokensCall(limits: DeviceLimits, rows: number, V: number, s: TokenSampling): KernelCall {
  if (!(V >= 1 && V < MAX_VOCAB)) throw new KernelError(`sampleTokens: V = ${V} must be in [1, 2^24) (counts are summed in f32)`);
  if (!(s.temperature >= 0) || !(s.topP > 0 && s.topP <= 1) || !Number.isInteger(s.topK) || s.topK < 0)
    throw new KernelError(`sampleTokens: temperature ${s.temperature}, topK ${s.topK}, topP ${s.topP} out of range`);
  const { counting, weighted } = sampleTokensPasses(V, s);
  const n = rows * V;
  return {
    kernel: sampleTokensKernel,
    constants: { WG: sampleTokensWorkgroupSize(limits, V) },
    params: { rows, V, temperature: s.temperature, topK: s.topK, topP: s.topP, seed: s.seed >>> 0, step: s.step >>> 0 },
    workgroups: grid1d(rows, 1, limits),
    // Per logit and pass: the order key, a compare and an add (counting), plus a subtract, a multiply and an
    // exp (weighted). Every pass re-reads the row (from cache on a GPU: a row of 32k logits is 128 KiB).
    cost: { flops: n * (3 * counting + 6 * weighted), bytesRead: 4 * n * (counting + weighted) + 8 * rows, bytesWritten: 4 * rows },
  };
}
