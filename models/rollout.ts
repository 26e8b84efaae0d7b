// Rollouts for reward learning: many prompts generated batchSize rows at a time with CausalLM.generate (the head on
// the last position only, tokens chosen on the GPU, finished rows dropped and waiting prompts joining), and the rate.
import type { CausalLM, GeneratedRow, GenerationOptions, GenerationPass } from './causal_lm.ts';

export interface RolloutOptions extends Omit<GenerationOptions, 'rowIds'> {
  /** Rows generated together (the KV cache's rows); prompts join as rows finish. */
  batchSize: number;
}

export interface RolloutTiming {
  /** Real (unpadded) prompt tokens, and the new tokens of every row (EOS included). */
  promptTokens: number;
  generatedTokens: number;
  /** Wall-clock seconds of the rollout, prompt passes included. */
  seconds: number;
  /** generatedTokens / seconds. */
  tokensPerSecond: number;
  /** Model passes (every prompt pass included). */
  steps: number;
  /** Of `seconds`, the host's recording of the steps (GenerationTiming.recordSeconds, summed). */
  recordSeconds: number;
}

export interface Rollout {
  /** One row per prompt, in the prompts' order. */
  rows: GeneratedRow[];
  /** What ran (Generation.passes), for the audit. */
  passes: GenerationPass[];
  timing: RolloutTiming;
}

/**
 * Generates after every prompt, batchSize rows in flight: prompts go in longest first, so that a batch pads little,
 * and wait for the batch to compact to join it (GenerationOptions.batchSize). Prompt i is row id i of the GPU
 * sampler's generator, so that its tokens do not depend on the batch it lands in (for the same logits); the host
 * sampler (opts.sampler 'host') draws every row from one stream of opts.seed.
 */
export async function rollout(model: CausalLM, prompts: readonly ArrayLike<number>[], opts: RolloutOptions): Promise<Rollout> {
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  const start = performance.now();
  const g = await model.generate(order.map((i) => prompts[i]), { ...opts, rowIds: order });
  const seconds = (performance.now() - start) / 1000;
  const rows = new Array<GeneratedRow>(prompts.length);
  g.rows.forEach((row, j) => { rows[order[j]] = row; });
  const generatedTokens = rows.reduce((n, r) => n + r.tokens.length, 0);
  return {
    rows,
    passes: g.passes,
    timing: {
      promptTokens: g.timing.promptTokens, generatedTokens, seconds,
      tokensPerSecond: seconds > 0 ? generatedTokens / seconds : 0, steps: g.steps, recordSeconds: g.timing.recordSeconds,
    },
  };
}
