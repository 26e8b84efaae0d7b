// Reward models: transformers' ...ForSequenceClassification with one label, i.e. the causal LM's trunk and a
// `score` linear layer without bias, read at the last token that is not padding. The pairwise loss that
// trains it is train/objectives/preference.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ParameterSet } from '../engine/params.ts';
import { writeSafetensors, type TensorToWrite } from '../engine/safetensors.ts';
import { Tensor } from '../engine/tensor.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { linear } from '../engine/ops/matmul.ts';
import { reshape } from '../engine/ops/shape.ts';
import { CONFIG_FILE, rewardParams, type ModelConfig } from './config.ts';
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
  /** Gradient checkpointing of the trunk, as CausalLM's. */
  gradientCheckpointing = false;

  constructor(readonly config: ModelConfig, readonly params: ParameterSet) {}

  /** ids [B, T] on the host (the read position is decided there) -> rewards [B]. */
  forward(ids: Int32Array, T: number): Tensor {
    const B = ids.length / T;
    const idsTensor = Tensor.fromArray(ids, [B, T], 'i32');
    const hidden = reshape(hiddenStates(this.config, this.params, idsTensor, undefined, undefined, this.gradientCheckpointing), [B * T, this.config.hidden]); // [B·T, C]
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

/**
 * config.json of a reward model as transformers writes it for ...ForSequenceClassification with one label
 * (classic field names, which loadConfig and transformers 4 and 5 all read). pad_token_id is set: transformers
 * reads a batch's rewards at the last token that is not padding, and refuses batches without a pad id.
 */
export function rewardConfigJson(cfg: ModelConfig): Record<string, unknown> {
  const common = {
    model_type: cfg.modelType, vocab_size: cfg.vocabSize, hidden_size: cfg.hidden, num_hidden_layers: cfg.layers,
    num_attention_heads: cfg.heads, intermediate_size: cfg.intermediate, hidden_act: cfg.hiddenAct,
    max_position_embeddings: cfg.maxPositions, tie_word_embeddings: cfg.tieWordEmbeddings,
    bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId, pad_token_id: cfg.padTokenId ?? 0,
    num_labels: 1, id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 }, torch_dtype: 'float32',
  };
  if (cfg.modelType === 'gpt_neox') {
    return {
      architectures: ['GPTNeoXForSequenceClassification'], ...common, layer_norm_eps: cfg.eps,
      use_parallel_residual: cfg.parallelResidual, attention_bias: cfg.attentionBias,
      rotary_pct: cfg.rotaryDims / cfg.headDim, rotary_emb_base: cfg.ropeTheta, attention_dropout: 0, hidden_dropout: 0,
    };
  }
  return {
    architectures: ['MistralForSequenceClassification'], ...common, num_key_value_heads: cfg.kvHeads, head_dim: cfg.headDim,
    rms_norm_eps: cfg.eps, rope_theta: cfg.ropeTheta, sliding_window: cfg.slidingWindow, attention_dropout: 0,
  };
}

/**
 * Writes a reward model folder that transformers loads as GPTNeoXForSequenceClassification or
 * MistralForSequenceClassification and loadRewardModel loads back: config.json (rewardConfigJson) and
 * model.safetensors in f32 with the trunk's names and score.weight [1, C].
 */
export async function saveRewardModel(model: RewardModel, dir: string): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const s of model.params.specs) {
    const t = model.params.get(s.name);
    if (t.dtype !== 'f32') throw new Error(`saveRewardModel: ${s.name} is stored as ${t.dtype}; only f32 reward models are written`);
    tensors[s.name] = { dtype: 'F32', shape: s.shape, data: (await t.toArray()) as Float32Array };
  }
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, CONFIG_FILE), `${JSON.stringify(rewardConfigJson(model.config), null, 2)}\n`);
}
