// Hugging Face causal language models on the GPU: a folder (config.json + weights) becomes a CausalLM that
// returns next-token logits and generates with a KV cache (the losses are train/objectives/).
//
// The architectures (gpt_neox.ts, mistral.ts) are their trunks: ids -> final-normed hidden states, with
// transformers' parameter names. This file adds what is common: loading, the output head, the cache
// and its attention, and generation (sampling.ts picks the tokens). The reward model (reward.ts) reuses the
// same trunk.
import { join } from 'node:path';
import { gradEnabled, noGrad } from '../engine/autodiff.ts';
import { GpuError } from '../engine/gpu.ts';
import { isMatrix, ParameterSet, type ParamSpec } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { Tensor, tidyAsync } from '../engine/tensor.ts';
import { linear } from '../engine/ops/matmul.ts';
import { narrow } from '../engine/ops/shape.ts';
import { CONFIG_FILE, ConfigError, loadConfig, modelParams, type ModelConfig } from './config.ts';
import { ModelWeights } from './weights.ts';
import { KVCache } from './self_attention.ts';
import { checkSamplingOptions, sampleToken, SamplingError, type SamplingOptions } from './sampling.ts';
import type { Tokenizer } from './tokenizer.ts';
import { gptNeoxLmHead, gptNeoxModel } from './gpt_neox.ts';
import { mistralLmHead, mistralModel } from './mistral.ts';
import type { FloatDType, HalfDType } from '../kernels/dtype.ts';

export interface GenerationOptions extends SamplingOptions {
  maxNewTokens: number;
  /** A row stops after emitting one of these (the config's eos_token_id); none: rows run to maxNewTokens. */
  eosTokenIds?: readonly number[];
  /** A row stops once its decoded new tokens contain one of these; needs `decoder`. */
  stopStrings?: readonly string[];
  /** Turns a row's new tokens into text (a Tokenizer); with it each row's text is returned. */
  decoder?: Pick<Tokenizer, 'decode'>;
  /** Seed of the sampling generator (engine/random.ts): the same seed gives the same tokens. */
  seed?: number;
}

export interface GeneratedRow {
  /** The new tokens, the EOS or the token that completed a stop string included. */
  tokens: number[];
  /** The new tokens decoded without special tokens, EOS excluded, cut before the stop string; with a decoder only. */
  text?: string;
  finish: 'eos' | 'stop' | 'length';
}

export interface GenerationTiming {
  /** Real (unpadded) prompt tokens, and the seconds of the prompt pass up to its logits on the host. */
  promptTokens: number;
  promptSeconds: number;
  /** Tokens of the steps after the prompt pass (which yields each row's first token), and their seconds. */
  decodeTokens: number;
  decodeSeconds: number;
}

export interface Generation {
  rows: GeneratedRow[];
  /** Model steps run, the prompt pass included: fewer than maxNewTokens when every row stopped early. */
  steps: number;
  timing: GenerationTiming;
}

/**
 * The architecture's trunk (transformers' GPTNeoXModel, MistralModel): ids i32 [B, T] -> final-normed hidden
 * states [B, T, C]. With a cache (one KVCache per layer) the ids follow the cached tokens.
 */
export function hiddenStates(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[]): Tensor {
  if (cache && gradEnabled()) throw new GpuError('a KV cache is for generation, whose attention has no backward: run under noGrad (CausalLM.step does)');
  return cfg.modelType === 'gpt_neox' ? gptNeoxModel(cfg, p, ids, cache) : mistralModel(cfg, p, ids, cache);
}

/**
 * The folder's weights on the GPU, checked strictly against `specs`, uploaded one tensor at a time. With
 * weightsDtype f16 or bf16 the matrices (embeddings, projections, head) are stored in 16 bits and frozen, so
 * that a 7B model fits; norms and biases stay f32. `frozen`: nothing trains (e.g. a reference model in f32).
 */
export function loadParameters(dir: string, specs: ParamSpec[], weightsDtype: FloatDType = 'f32', frozen = false): ParameterSet {
  const weights = ModelWeights.open(dir, specs);
  const half = (s: ParamSpec) => weightsDtype !== 'f32' && isMatrix(s);
  try {
    return new ParameterSet(specs.map((s) => (frozen || half(s) ? { ...s, trainable: false } : s)), (s) => half(s)
      ? { dtype: weightsDtype as HalfDType, bits: weights.read16(s.name, weightsDtype as HalfDType) }
      : weights.read(s.name));
  } finally {
    weights.close();
  }
}

/**
 * Where a model comes from: a folder, optionally another config file (e.g. config.classic.json), the weights'
 * storage, and whether it is frozen (a reference model: no gradients, no optimizer state).
 */
export interface LoadOptions { configFile?: string; weightsDtype?: FloatDType; frozen?: boolean }

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

  /**
   * An empty cache for `batch` sequences of up to maxLength tokens, one KVCache per layer; padLengths[b]: the
   * left padding of row b (prompts of different lengths).
   */
  createCache(batch: number, maxLength: number, padLengths?: readonly number[]): KVCache[] {
    const c = this.config;
    return Array.from({ length: c.layers }, () => new KVCache(batch, c.kvHeads, maxLength, c.headDim, padLengths));
  }

  /** Generation step: logits [B, T, V] of T new tokens after the cache's, whose keys and values it appends. */
  step(ids: Tensor, cache: KVCache[]): Tensor {
    return noGrad(() => this.forward(ids, cache));
  }

  /**
   * Generates up to opts.maxNewTokens tokens after each prompt (token ids). Shorter prompts are left-padded to
   * the longest: padding is invisible to attention and each row's rotary positions start at its first real
   * token, so that a row generates what it would alone. A row that stopped keeps stepping with the batch
   * (its outputs dropped) until every row has stopped. Sampling runs on the host: each step reads back the
   * last position's logits [B, V], one read-back per generated token of the batch.
   */
  async generate(prompts: readonly ArrayLike<number>[], opts: GenerationOptions): Promise<Generation> {
    const { maxNewTokens, eosTokenIds = [], stopStrings = [], decoder } = opts;
    const V = this.config.vocabSize, B = prompts.length;
    checkSamplingOptions(opts);
    if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new SamplingError(`generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    if (stopStrings.length > 0 && !decoder) throw new SamplingError('generate: stop strings need a decoder (a tokenizer) to read the text');
    if (stopStrings.some((s) => s.length === 0)) throw new SamplingError('generate: a stop string must not be empty');
    if (B === 0 || prompts.some((p) => p.length === 0)) throw new SamplingError('generate: needs at least one prompt, and no empty prompt');
    for (const p of prompts) for (const id of Array.from(p)) if (!Number.isInteger(id) || id < 0 || id >= V) throw new SamplingError(`generate: prompt token ${id} outside the vocabulary [0, ${V})`);

    const rows: GeneratedRow[] = prompts.map(() => ({ tokens: [], finish: 'length' }));
    const timing: GenerationTiming = { promptTokens: prompts.reduce((n, p) => n + p.length, 0), promptSeconds: 0, decodeTokens: 0, decodeSeconds: 0 };
    const decode = (tokens: number[]) => decoder!.decode(tokens, { skipSpecialTokens: true });
    const { ids, longest, padLengths } = leftPadded(prompts);
    const random = rng(opts.seed ?? 0);
    let steps = 0;
    // The last new token is never fed back: the cache holds the prompt and maxNewTokens - 1 tokens.
    const cache = maxNewTokens > 0 ? this.createCache(B, longest + maxNewTokens - 1, padLengths) : [];
    let input = Tensor.fromArray(ids, [B, longest], 'i32');
    try {
      const start = performance.now();
      while (steps < maxNewTokens) {
        const last = await tidyAsync(async () => {
          const logits = this.step(input, cache); // [B, T, V]
          return narrow(logits, 1, logits.shape[1] - 1, 1).toArray(); // [B, 1, V]
        });
        input.dispose();
        const promptPass = ++steps === 1;
        for (const [b, row] of rows.entries()) {
          if (row.finish !== 'length') continue; // a row runs until it stops or reaches the length
          row.tokens.push(sampleToken(last.subarray(b * V, (b + 1) * V), opts, random));
          if (!promptPass) timing.decodeTokens++;
          if (eosTokenIds.includes(row.tokens[row.tokens.length - 1])) row.finish = 'eos';
          // A stop string may span tokens, and a token's text may depend on its neighbours: decode the whole row.
          else if (stopStrings.length > 0 && stopIndex(decode(row.tokens), stopStrings) >= 0) row.finish = 'stop';
        }
        if (promptPass) timing.promptSeconds = (performance.now() - start) / 1000;
        if (rows.every((r) => r.finish !== 'length') || steps === maxNewTokens) break;
        input = Tensor.fromArray(rows.map((r) => r.tokens[r.tokens.length - 1]), [B, 1], 'i32');
      }
      timing.decodeSeconds = (performance.now() - start) / 1000 - timing.promptSeconds;
    } finally {
      input.dispose();
      for (const layer of cache) layer.dispose();
    }
    if (decoder) {
      for (const row of rows) {
        const text = decode(row.finish === 'eos' ? row.tokens.slice(0, -1) : row.tokens);
        row.text = row.finish === 'stop' ? text.slice(0, stopIndex(text, stopStrings)) : text;
      }
    }
    return { rows, steps, timing };
  }

  /** Greedy decoding without EOS: each prompt followed by maxNewTokens argmax tokens (the first on ties, as torch.argmax). */
  async greedy(prompts: Int32Array[], maxNewTokens: number): Promise<Int32Array[]> {
    const { rows } = await this.generate(prompts, { maxNewTokens });
    return rows.map((row, b) => Int32Array.from([...prompts[b], ...row.tokens]));
  }

  dispose(): void { this.params.dispose(); }
}

/** Prompts as one left-padded batch ids [B, longest]; padding columns hold token 0 (no query sees them). */
function leftPadded(prompts: readonly ArrayLike<number>[]): { ids: Int32Array; longest: number; padLengths: number[] } {
  const longest = Math.max(...prompts.map((p) => p.length));
  const padLengths = prompts.map((p) => longest - p.length);
  const ids = new Int32Array(prompts.length * longest);
  prompts.forEach((p, b) => ids.set(Array.from(p), b * longest + padLengths[b]));
  return { ids, longest, padLengths };
}

/** The first index of any of the stop strings in text, or -1. */
function stopIndex(text: string, stopStrings: readonly string[]): number {
  const found = stopStrings.map((s) => text.indexOf(s)).filter((i) => i >= 0);
  return found.length > 0 ? Math.min(...found) : -1;
}

/** A ...ForCausalLM folder: config.json (or opts.configFile) and its weights, checked strictly. */
export function loadCausalLM(dir: string, opts: LoadOptions = {}): CausalLM {
  const config = loadConfigFor(dir, 'lm', opts);
  return new CausalLM(config, loadParameters(dir, modelParams(config), opts.weightsDtype, opts.frozen));
}
