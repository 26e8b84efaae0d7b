// Reward models: transformers' ...ForSequenceClassification with one label, i.e. the causal LM's trunk and a
// `score` linear layer without bias, read at the last token that is not padding. The pairwise loss that
// trains it is train/objectives/preference.ts.
import type { ParameterSet } from '../engine/params.ts';
import { Tensor } from '../engine/tensor.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { linear } from '../engine/ops/matmul.ts';
import { reshape } from '../engine/ops/shape.ts';
import { rewardParams, type ModelConfig } from './config.ts';
import { hiddenStates, loadConfigFor, loadParameters, type LoadOptions } from './causal_lm.ts';

/**
 * transformers' read position per row of ids [B, T]: the rightmost token that is not pad_token_id
 * (argmax of (ids != pad) · arange(T), so 0 for a row of padding only), or the last one without a pad id.
 */
export function lastTokenIndices(ids: Int32Array, T: number, padTokenId: number | null): Int32Array {
  return Int32Array.from({ length: ids.length / T }, (_, b) => {
    if (padTokenId === null) return T - 1;
    let last = 0;
    for (let t = 0; t < T; t++) if (ids[b * T + t] !== padTokenId) last = t;
    return last;
  });
}

export class RewardModel {
  constructor(readonly config: ModelConfig, readonly params: ParameterSet) {}

  /** ids [B, T] on the host (the read position is decided there) -> rewards [B]. */
  forward(ids: Int32Array, T: number): Tensor {
    const B = ids.length / T;
    const idsTensor = Tensor.fromArray(ids, [B, T], 'i32');
    const hidden = reshape(hiddenStates(this.config, this.params, idsTensor), [B * T, this.config.hidden]); // [B·T, C]
    // Row b of the batch reads hidden row b·T + last[b]: a differentiable row gather, which is what embedding is.
    const rows = Tensor.fromArray(lastTokenIndices(ids, T, this.config.padTokenId).map((t, b) => b * T + t), [B], 'i32');
    const rewards = reshape(linear(embedding(rows, hidden), this.params.get('score.weight')), [B]); // [B, C] -> [B, 1] -> [B]
    idsTensor.dispose();
    rows.dispose();
    return rewards;
  }

  dispose(): void { this.params.dispose(); }
}

/** A ...ForSequenceClassification folder with one label: config.json (or opts.configFile) and its weights. */
export function loadRewardModel(dir: string, opts: LoadOptions = {}): RewardModel {
  const config = loadConfigFor(dir, 'score', opts);
  return new RewardModel(config, loadParameters(dir, rewardParams(config), 'f32', opts.frozen));
}
