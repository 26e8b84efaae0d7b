// The next token from one row of logits, on the host: greedy, or a draw from a seeded generator after
// transformers' warpers in its order (temperature, then top-k, then top-p).
import type { Random } from '../engine/random.ts';

export interface SamplingOptions {
  /** 0 (the default): greedy, the argmax; > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Keep the k highest logits (and any tied with the k-th); 0 (the default): all. */
  topK?: number;
  /** Keep the smallest set of most probable tokens whose probability sums to at least p, one at least; 1 (the default): all. */
  topP?: number;
}

export class SamplingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SamplingError';
  }
}

/** Throws a SamplingError naming the first option out of range. */
export function checkSamplingOptions({ temperature = 0, topK = 0, topP = 1 }: SamplingOptions): void {
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new SamplingError(`temperature must be a finite number >= 0, got ${temperature}`);
  if (!Number.isSafeInteger(topK) || topK < 0) throw new SamplingError(`topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new SamplingError(`topP must be in (0, 1], got ${topP}`);
  if (temperature === 0 && (topK !== 0 || topP !== 1)) throw new SamplingError('topK and topP shape sampling: they need a temperature > 0 (temperature 0 is greedy)');
}

/** The first index of the largest value (torch.argmax's choice on ties). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * The distribution a sampled token is drawn from, in float64: softmax(logits / temperature) restricted to the
 * tokens top-k and top-p keep and renormalised, as transformers' TemperatureLogitsWarper, TopKLogitsWarper and
 * TopPLogitsWarper (min_tokens_to_keep 1) leave it. Needs a temperature > 0.
 */
export function samplingDistribution(logits: ArrayLike<number>, opts: SamplingOptions): Float64Array {
  checkSamplingOptions(opts);
  const { temperature = 0, topK = 0, topP = 1 } = opts;
  if (temperature === 0) throw new SamplingError('samplingDistribution: temperature 0 is greedy, not a distribution');
  const V = logits.length;
  const scores = Float64Array.from(logits, (l) => l / temperature);
  // top-k removes only the scores below the k-th highest: tokens tied with it stay.
  const kth = topK > 0 && topK < V ? scores.slice().sort()[V - topK] : -Infinity;
  const kept = Array.from({ length: V }, (_, i) => i).filter((i) => scores[i] >= kth);
  let max = -Infinity;
  for (const i of kept) max = Math.max(max, scores[i]);
  const weights = new Float64Array(V);
  let total = 0;
  for (const i of kept) total += weights[i] = Math.exp(scores[i] - max);
  // top-p on the top-k survivors, most probable first (ties in index order): a token stays while the
  // probability before it is below p, so the first always stays.
  if (topP < 1) {
    kept.sort((a, b) => scores[b] - scores[a] || a - b);
    let before = 0, r = 0;
    while (r < kept.length && before < topP) before += weights[kept[r++]] / total;
    for (; r < kept.length; r++) weights[kept[r]] = 0;
    total = weights.reduce((a, w) => a + w, 0);
  }
  return weights.map((w) => w / total);
}

/** Inverse-CDF draw of one index from probabilities summing to 1, with one uniform number of `random`. */
function draw(probs: Float64Array, random: Random): number {
  const u = random.next();
  let cumulative = 0, last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    last = i;
    cumulative += probs[i];
    if (u < cumulative) return i;
  }
  return last; // u beyond the rounded total: the last token with mass
}

/** The next token of one row of logits: the argmax at temperature 0, else one draw of `random` from samplingDistribution. */
export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, random: Random): number {
  return (opts.temperature ?? 0) === 0 ? argmax(logits) : draw(samplingDistribution(logits, opts), random);
}
