// Rollouts for reward learning: many prompts generated in batches of batchSize with CausalLM.generate (the head
// on the last position only, tokens chosen on the GPU, finished rows dropped from the batch), and the rate.
import { SamplingError } from './sampling.ts';
import type { CausalLM, GeneratedRow, GenerationOptions } from './causal_lm.ts';

export interface RolloutOptions extends Omit<GenerationOptions, 'rowIds'> {
  /** Prompts generated together; the last batch may be smaller. */
  batchSize: number;
}

export interface RolloutTiming {
  /** Real (unpadded) prompt tokens, and the new tokens of every row (EOS included). */
  promptTokens: number;
  generatedTokens: number;
  /** Wall-clock seconds of all batches, prompt passes included. */
  seconds: number;
  /** generatedTokens / seconds. */
  tokensPerSecond: number;
  /** Model steps of all batches (each batch's prompt pass included). */
  steps: number;
  /** Of `seconds`, the host's recording of the steps (GenerationTiming.recordSeconds, summed). */
  recordSeconds: number;
}

export interface Rollout {
  /** One row per prompt, in the prompts' order. */
  rows: GeneratedRow[];
  timing: RolloutTiming;
}

/**
 * Generates after every prompt. Prompts go into batches longest first, so that a batch pads little; prompt i
 * is row id i of the GPU sampler's generator, so that its tokens do not depend on the batch it lands in (for
 * the same logits). The host sampler (opts.sampler 'host') draws each batch from its own seed, derived from
 * opts.seed and the batch's index.
 */
export async function rollout(model: CausalLM, prompts: readonly ArrayLike<number>[], opts: RolloutOptions): Promise<Rollout> {
  const { batchSize, ...generation } = opts;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new SamplingError(`rollout: batchSize must be a positive integer, got ${batchSize}`);
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  const rows = new Array<GeneratedRow>(prompts.length);
  const seed = opts.seed ?? 0;
  let steps = 0, recordSeconds = 0;
  const start = performance.now();
  for (let first = 0; first < order.length; first += batchSize) {
    const members = order.slice(first, first + batchSize);
    const batchSeed = opts.sampler === 'host' ? (seed ^ Math.imul(first / batchSize + 1, 0x9e3779b9)) >>> 0 : seed;
    const g = await model.generate(members.map((i) => prompts[i]), { ...generation, seed: batchSeed, rowIds: members });
    g.rows.forEach((row, j) => { rows[members[j]] = row; });
    steps += g.steps;
    recordSeconds += g.timing.recordSeconds;
  }
  const seconds = (performance.now() - start) / 1000;
  const generatedTokens = rows.reduce((n, r) => n + r.tokens.length, 0);
  return {
    rows,
    timing: {
      promptTokens: prompts.reduce((n, p) => n + p.length, 0), generatedTokens, seconds,
      tokensPerSecond: seconds > 0 ? generatedTokens / seconds : 0, steps, recordSeconds,
    },
  };
}
