// Hugging Face causal language models on the GPU: a folder (config.json + weights) becomes a CausalLM that
// returns next-token logits, trains on the next-token loss and generates with a KV cache.
//
// The architectures (gpt_neox.ts, mistral.ts) are their trunks: ids -> final-normed hidden states, with
// transformers' parameter names. This file adds what is common: loading, the output head, the loss, the cache
// and its attention, and greedy decoding. The reward model (reward.ts) reuses the same trunk.
import { join } from 'node:path';
import { gradEnabled, noGrad } from '../engine/autodiff.ts';
import { GpuError } from '../engine/gpu.ts';
import { ParameterSet, type ParamSpec } from '../engine/params.ts';
import { Tensor, tidyAsync } from '../engine/tensor.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { linear } from '../engine/ops/matmul.ts';
import { narrow, reshape } from '../engine/ops/shape.ts';
import { CONFIG_FILE, ConfigError, loadConfig, modelParams, type ModelConfig } from './config.ts';
import { ModelWeights } from './weights.ts';
import { KVCache } from './self_attention.ts';
import { gptNeoxLmHead, gptNeoxModel } from './gpt_neox.ts';
import { mistralLmHead, mistralModel } from './mistral.ts';

/** transformers' ignore_index: positions that predict nothing. */
const IGNORE_INDEX = -100;

/**
 * The architecture's trunk (transformers' GPTNeoXModel, MistralModel): ids i32 [B, T] -> final-normed hidden
 * states [B, T, C]. With a cache (one KVCache per layer) the ids follow the cached tokens.
 */
export function hiddenStates(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[]): Tensor {
  if (cache && gradEnabled()) throw new GpuError('a KV cache is for generation, whose attention has no backward: run under noGrad (CausalLM.step does)');
  return cfg.modelType === 'gpt_neox' ? gptNeoxModel(cfg, p, ids, cache) : mistralModel(cfg, p, ids, cache);
}

/** The parameters of `specs` from the weights in `dir`, checked strictly, uploaded one tensor at a time. */
export function loadParameters(dir: string, specs: ParamSpec[]): ParameterSet {
  const weights = ModelWeights.open(dir, specs);
  try {
    return new ParameterSet(specs, (s) => weights.read(s.name));
  } finally {
    weights.close();
  }
}

/** Where a model comes from: a folder, and optionally another config file (e.g. config.classic.json). */
export interface LoadOptions { configFile?: string }

/** config.json (or opts.configFile) of `dir`, required to describe the given head. */
export function loadConfigFor(dir: string, head: ModelConfig['head'], opts: LoadOptions = {}): ModelConfig {
  const config = loadConfig(opts.configFile ?? dir);
  if (config.head !== head) {
    const [lm, score] = ['a causal LM (...ForCausalLM)', 'a reward model (...ForSequenceClassification)'];
    throw new ConfigError(opts.configFile ?? join(dir, CONFIG_FILE), null, null, head === 'lm' ? `describes ${score}; ${lm} is needed here` : `describes ${lm}; ${score} is needed here`);
  }
  return config;
}

export class CausalLM {
  constructor(readonly config: ModelConfig, readonly params: ParameterSet) {}

  /** The output head [V, C]: GPT-NeoX's embed_out, Mistral's lm_head, or the input embedding when tied. */
  lmHead(): Tensor {
    return this.config.modelType === 'gpt_neox' ? gptNeoxLmHead(this.config, this.params) : mistralLmHead(this.config, this.params);
  }

  /** ids i32 [B, T] -> logits [B, T, V]; with a cache, the ids follow the cached tokens. */
  forward(ids: Tensor, cache?: KVCache[]): Tensor {
    return linear(hiddenStates(this.config, this.params, ids, cache), this.lmHead());
  }

  /** An empty cache for `batch` sequences of up to maxLength tokens, one KVCache per layer. */
  createCache(batch: number, maxLength: number): KVCache[] {
    const c = this.config;
    return Array.from({ length: c.layers }, () => new KVCache(batch, c.kvHeads, maxLength, c.headDim));
  }

  /** Generation step: logits [B, T, V] of T new tokens after the cache's, whose keys and values it appends. */
  step(ids: Tensor, cache: KVCache[]): Tensor {
    return noGrad(() => this.forward(ids, cache));
  }

  /**
   * Greedy decoding with a KV cache: prompts of one length (rows of [B, P]) -> [B, P + maxNewTokens], each new
   * token the argmax of the last position's logits (the first one on ties, as torch.argmax). No stop on EOS.
   */
  async greedy(prompts: Int32Array[], maxNewTokens: number): Promise<Int32Array[]> {
    const B = prompts.length, P = prompts[0]?.length ?? 0;
    if (B === 0 || P === 0 || prompts.some((p) => p.length !== P)) throw new GpuError('greedy: prompts must be non-empty and of one length');
    const V = this.config.vocabSize;
    const out = prompts.map((p) => Int32Array.from({ length: P + maxNewTokens }, (_, t) => (t < P ? p[t] : 0)));
    const cache = this.createCache(B, P + maxNewTokens);
    try {
      let next = Tensor.fromArray(prompts.flatMap((p) => [...p]), [B, P], 'i32');
      for (let t = P; t < P + maxNewTokens; t++) {
        const last = await tidyAsync(async () => {
          const logits = this.step(next, cache); // [B, T, V]
          return narrow(logits, 1, logits.shape[1] - 1, 1).toArray(); // [B, 1, V]
        });
        next.dispose();
        for (let b = 0; b < B; b++) out[b][t] = argmax(last.subarray(b * V, (b + 1) * V));
        next = Tensor.fromArray(out.map((row) => row[t]), [B, 1], 'i32');
      }
      next.dispose();
    } finally {
      for (const layer of cache) layer.dispose();
    }
    return out;
  }

  dispose(): void { this.params.dispose(); }
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * Mean next-token cross-entropy, transformers' loss with labels = input_ids: logits [B, T, V] at position t
 * predict ids[:, t + 1]; `ids` are the model's input tokens on the host, [B, T] row-major.
 */
export function nextTokenLoss(logits: Tensor, ids: Int32Array): Tensor {
  const [B, T, V] = logits.shape;
  const targets = Tensor.fromArray(Int32Array.from(ids, (_, i) => (i % T === T - 1 ? IGNORE_INDEX : ids[i + 1])), [B * T], 'i32');
  const loss = crossEntropy(reshape(logits, [B * T, V]), targets, { ignoreIndex: IGNORE_INDEX });
  targets.dispose();
  return loss;
}

/** A ...ForCausalLM folder: config.json (or opts.configFile) and its weights, checked strictly. */
export function loadCausalLM(dir: string, opts: LoadOptions = {}): CausalLM {
  const config = loadConfigFor(dir, 'lm', opts);
  return new CausalLM(config, loadParameters(dir, modelParams(config)));
}
