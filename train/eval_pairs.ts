// The preference-pair evaluation that SFT, IRFT and RFT report (and `juice experiment hh-gap` reads): how much more
// likely the model finds the chosen response of a pair than the rejected one, after the same prompt.
//
//   s(y)        Σ_t log p(y_t | x, y_<t) over the response's tokens (EOS included where the cut left it), n(y) tokens
//   gap_sum     mean over pairs of s(chosen) - s(rejected)
//   gap_tok     mean over pairs of s(chosen)/n(chosen) - s(rejected)/n(rejected)
//   acc         the fraction of pairs with s(chosen) > s(rejected)
//   chosen_nll  -Σ s(chosen) / Σ n(chosen): the chosen responses' NLL per token (the SFT eval loss on them)
//
// One pass over the rows [chosen_0, rejected_0, chosen_1, ...] in batches of `batchSize` (a pair's two rows share
// the prompt, so they pad alike), under noGrad, charged to the ledger phase 'evaluation'.
import { noGrad } from '../engine/autodiff.ts';
import { ledger } from '../engine/ledger.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import type { CausalLM } from '../models/causal_lm.ts';
import { collate, type EncodedExample, type EncodedSequence } from './data/index.ts';
import { sequenceLogprobs } from './objectives/logprobs.ts';

export interface PairMetrics { gap_sum: number; gap_tok: number; acc: number; chosen_nll: number }
export const PAIR_METRICS: readonly (keyof PairMetrics)[] = ['gap_sum', 'gap_tok', 'acc', 'chosen_nll'];

/** An encoded example that has a rejected response. */
export type EncodedPair = EncodedExample & { rejected: EncodedSequence };

export function isPair(e: EncodedExample): e is EncodedPair { return e.rejected !== undefined; }

/** Response tokens a row is scored on: its mask, position 0 excepted (it has no prediction). */
export function scoredTokens(s: EncodedSequence): number {
  let n = 0;
  for (let t = 1; t < s.responseMask.length; t++) n += s.responseMask[t];
  return n;
}

/**
 * s(y) per row, in the rows' order, on the host, in batches of batchSize charged to the ledger phase 'evaluation';
 * `recordBatch` is told each batch's rows and padded length (the audit's workload: Workloads.forward('evaluation')).
 */
export async function rowLogprobs(model: CausalLM, rows: readonly EncodedSequence[], batchSize: number, padId: number, recordBatch?: (count: number, T: number) => void): Promise<number[]> {
  const sums: number[] = [];
  for (let first = 0; first < rows.length; first += batchSize) {
    const b = collate(rows.slice(first, first + batchSize), padId);
    const logp = tidy(() => ledger.inPhase('evaluation', () => noGrad(() => {
      const ids = Tensor.fromArray(b.ids, [b.B, b.T], 'i32');
      const mask = Tensor.fromArray(Float32Array.from(b.responseMask), [b.B, b.T]);
      return sequenceLogprobs(model.tokenLogprobs(ids), mask); // [B]
    })).keep());
    recordBatch?.(b.B, b.T);
    try { sums.push(...(await logp.toArray())); } finally { logp.dispose(); }
  }
  return sums;
}

/** The four numbers of the file comment over `pairs`; padId pads the batches (masked out, so any id works); recordBatch as rowLogprobs's. */
export async function pairMetrics(model: CausalLM, pairs: readonly EncodedPair[], batchSize: number, padId = 0, recordBatch?: (count: number, T: number) => void): Promise<PairMetrics> {
  if (pairs.length === 0) throw new Error('pairMetrics: no pairs');
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`pairMetrics: batchSize ${batchSize} must be a positive integer`);
  const rows = pairs.flatMap((p) => [p as EncodedSequence, p.rejected]);
  const s = await rowLogprobs(model, rows, batchSize, padId, recordBatch);
  let gapSum = 0, gapTok = 0, wins = 0, chosenSum = 0, chosenTokens = 0;
  pairs.forEach((p, i) => {
    const sc = s[2 * i], sr = s[2 * i + 1];
    const nc = scoredTokens(p), nr = scoredTokens(p.rejected);
    if (nc === 0 || nr === 0) throw new Error(`pairMetrics: pair ${i} (${p.source.file}:${p.source.line}) has a response with no scored token`);
    gapSum += sc - sr;
    gapTok += sc / nc - sr / nr;
    if (sc > sr) wins++;
    chosenSum += sc;
    chosenTokens += nc;
  });
  const n = pairs.length;
  return { gap_sum: gapSum / n, gap_tok: gapTok / n, acc: wins / n, chosen_nll: -chosenSum / chosenTokens };
}

/** The metrics as an eval line's keys: eval_gap_sum, eval_gap_tok, eval_acc, eval_chosen_nll. */
export function pairEvalKeys(m: PairMetrics): Record<`eval_${keyof PairMetrics}`, number> {
  return { eval_gap_sum: m.gap_sum, eval_gap_tok: m.gap_tok, eval_acc: m.acc, eval_chosen_nll: m.chosen_nll };
}

/** Reads the four back from an eval line (a metrics.jsonl record); null when it lacks any. */
export function pairMetricsOf(record: Record<string, unknown>): PairMetrics | null {
  const get = (k: keyof PairMetrics) => record[`eval_${k}`];
  if (!PAIR_METRICS.every((k) => typeof get(k) === 'number')) return null;
  return { gap_sum: get('gap_sum') as number, gap_tok: get('gap_tok') as number, acc: get('acc') as number, chosen_nll: get('chosen_nll') as number };
}
