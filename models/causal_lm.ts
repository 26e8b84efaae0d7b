// Hugging Face causal language models on the GPU: a folder (config.json + weights) becomes a CausalLM that
// returns next-token logits and generates with a KV cache (the losses are train/objectives/).
//
// The architectures (gpt_neox.ts, mistral.ts) are their trunks: ids -> final-normed hidden states, with
// transformers' parameter names. This file adds what is common: loading, the output head, the cache
// and its attention, and generation (engine/ops/sample_tokens.ts picks the tokens on the GPU, sampling.ts on
// the host). The reward model (reward.ts) reuses the same trunk.
import { join } from 'node:path';
import { autocastF16, gradEnabled, noGrad } from '../engine/autodiff.ts';
import { gpu, GpuError } from '../engine/gpu.ts';
import { isMatrix, ParameterSet, type ParamSpec } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { castF16 } from '../engine/ops/cast.ts';
import { headLogits, headTokenLogprobs, type HeadOptions } from '../engine/ops/lm_head.ts';
import { tokenLogprobs } from '../engine/ops/token_logprobs.ts';
import { narrow } from '../engine/ops/shape.ts';
import { sampleTokens } from '../engine/ops/sample_tokens.ts';
import { CONFIG_FILE, ConfigError, loadConfig, modelParams, type ModelConfig } from './config.ts';
import { ModelWeights } from './weights.ts';
import { KVCache } from './self_attention.ts';
import { checkSamplingOptions, sampleToken, SamplingError, type SamplingOptions } from './sampling.ts';
import type { Tokenizer } from './tokenizer.ts';
import { gptNeoxLmHead, gptNeoxModel } from './gpt_neox.ts';
import { mistralLmHead, mistralModel } from './mistral.ts';
import { loraNames, projections, type LoraState } from './lora.ts';
import type { FloatDType, HalfDType } from '../kernels/dtype.ts';

export interface GenerationOptions extends SamplingOptions {
  maxNewTokens: number;
  /** A row stops after emitting one of these (the config's eos_token_id); none: rows run to maxNewTokens. */
  eosTokenIds?: readonly number[];
  /** A row stops once its decoded new tokens contain one of these; needs `decoder`. */
  stopStrings?: readonly string[];
  /** Turns a row's new tokens into text (a Tokenizer); with it each row's text is returned. */
  decoder?: Pick<Tokenizer, 'decode'>;
  /** Seed of the sampling generator: the same seed gives the same tokens (on the same device, for the GPU sampler). */
  seed?: number;
  /**
   * Where tokens are chosen: 'gpu' (the default: engine/ops/sample_tokens.ts, a counter-based generator keyed by
   * (seed, step, row id); B token ids read back a step) or 'host' (sampling.ts with engine/random.ts; the last
   * position's logits [B, V] read back a step). Greedy picks the same token either way.
   */
  sampler?: 'gpu' | 'host';
  /** The GPU generator's row id of each prompt (default its index): a prompt draws the same numbers in any batch. */
  rowIds?: readonly number[];
  /**
   * Rows in flight (default: every prompt): the first batchSize prompts start; the others, in order, join the batch
   * as it compacts (a prompt pass of their own, then the batch and KV cache rebuilt with them).
   */
  batchSize?: number;
  /** Drops finished rows from the batch and its KV cache once at most half of the batch is running (default true). */
  compact?: boolean;
  /** The cache's fused rotary and write (default true); false runs the training path's ops, the reference (KVCache). */
  fusedRotary?: boolean;
  /**
   * GPU sampler: each step is recorded and submitted from the previous step's ids before those are read back, so
   * that the device runs it while the host checks them; false waits for each step's ids first. Default:
   * pipelinedByDefault().
   */
  pipelined?: boolean;
}

export interface GeneratedRow {
  /** The new tokens, the EOS or the token that completed a stop string included. */
  tokens: number[];
  /** The new tokens decoded without special tokens, EOS excluded, cut before the stop string; with a decoder only. */
  text?: string;
  finish: 'eos' | 'stop' | 'length';
}

export interface GenerationTiming {
  /** Real (unpadded) prompt tokens of every prompt, and the seconds of the first batch's prompt pass up to its first tokens on the host. */
  promptTokens: number;
  promptSeconds: number;
  /**
   * Tokens of the decode steps (a prompt pass yields each of its rows' first token), and the seconds after the first
   * prompt pass (the joiners' prompt passes included).
   */
  decodeTokens: number;
  decodeSeconds: number;
  /**
   * Of the prompt and decode seconds, the host's recording of the steps' commands (the device may run meanwhile,
   * pipelined): where it nears the seconds a step, generation is bound by the host, not the device.
   */
  recordSeconds: number;
}

/**
 * Model passes of one shape that generation ran: `count` batch rows of `tokens` positions each after `filled` cached
 * columns (a prompt pass: filled 0, tokens the batch's longest prompt; a decode step: tokens 1); what the audit
 * counts (train/audit_model.ts generationBreakdown).
 */
export interface GenerationPass { count: number; tokens: number; filled: number }

export interface Generation {
  rows: GeneratedRow[];
  /**
   * Model steps run, the prompt pass included: fewer than maxNewTokens when every row stopped early (pipelined, the
   * lookahead step in flight when the last row stopped is computed, so it counts, though its tokens are dropped).
   */
  steps: number;
  /** Every pass computed, the steps' rows by shape. */
  passes: GenerationPass[];
  timing: GenerationTiming;
}

/**
 * The architecture's trunk (transformers' GPTNeoXModel, MistralModel): ids i32 [B, T] -> final-normed hidden
 * states [B, T, C]. With a cache (one KVCache per layer) the ids follow the cached tokens. `checkpointLayers`:
 * gradient checkpointing, each layer's forward replayed in the backward instead of its activations kept.
 */
export function hiddenStates(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[], lora?: LoraState, checkpointLayers = false): Tensor {
  if (cache && gradEnabled()) throw new GpuError('a KV cache is for generation, whose attention has no backward: run under noGrad (CausalLM.step does)');
  return (cfg.modelType === 'gpt_neox' ? gptNeoxModel : mistralModel)(cfg, p, ids, cache, lora, checkpointLayers);
}

/**
 * The folder's weights on the GPU, checked strictly against `specs`, uploaded one tensor at a time. With
 * weightsDtype f16 or bf16 the matrices (embeddings, projections, head) are stored in 16 bits and frozen, so
 * that a 7B model fits; norms and biases stay f32. `frozen`: nothing trains (e.g. a reference model in f32).
 */
export function loadParameters(dir: string, specs: ParamSpec[], weightsDtype: FloatDType = 'f32', frozen = false): ParameterSet {
  // Checked against the device before any upload: a tensor past one buffer is named with the limit.
  const weights = ModelWeights.open(dir, specs, { limits: { maxBufferSize: gpu().limits.maxBufferSize }, weightDtype: weightsDtype });
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
  /** LoRA's settings when the parameter table holds adapters (models/peft.ts attaches them). */
  lora?: LoraState;
  /** Gradient checkpointing: training forwards keep each layer's input only and replay the layer in the backward. */
  gradientCheckpointing = false;

  constructor(readonly config: ModelConfig, readonly params: ParameterSet) {}

  /** The output head [V, C]: GPT-NeoX's embed_out, Mistral's lm_head, or the input embedding when tied. */
  lmHead(): Tensor {
    return this.config.modelType === 'gpt_neox' ? gptNeoxLmHead(this.config, this.params) : mistralLmHead(this.config, this.params);
  }

  /** ids i32 [B, T] -> logits [B, T, V]; with a cache, the ids follow the cached tokens. */
  forward(ids: Tensor, cache?: KVCache[]): Tensor {
    return this.head(hiddenStates(this.config, this.params, ids, cache, this.lora, this.gradientCheckpointing));
  }

  /** The output head on hidden states [..., C] -> logits [..., V], with its LoRA adapter when it has one. */
  head(hidden: Tensor): Tensor {
    if (!this.headHasAdapter()) return headLogits(hidden, this.lmHead());
    return projections(this.params, this.lora)(hidden, this.headModule());
  }

  /**
   * log p(ids[b, t] | ids[b, :t]) f32 [B, T] (0 at t = 0) for ids i32 [B, T], differentiable: the trunk, then the
   * head fused with the log-softmax over vocabulary chunks (engine/ops/lm_head.ts), so that the [B, T, V] logits
   * never exist. A head with a LoRA adapter goes through its logits (tokenLogprobs of head()). Inside autocast
   * (mixed precision) the head's products read f16 copies of the hidden states and of an f32 weight (cast and read
   * window by window when it exceeds one binding).
   */
  tokenLogprobs(ids: Tensor, opts?: HeadOptions): Tensor {
    const hidden = hiddenStates(this.config, this.params, ids, undefined, this.lora, this.gradientCheckpointing);
    if (this.headHasAdapter()) return tokenLogprobs(this.head(hidden), ids);
    const weight = this.lmHead();
    if (!autocastF16() || weight.dtype !== 'f32') return headTokenLogprobs(hidden, weight, ids, opts);
    return headTokenLogprobs(castF16(hidden), castF16(weight), ids, opts);
  }

  private headModule(): string { return this.config.modelType === 'gpt_neox' ? 'embed_out' : 'lm_head'; }

  private headHasAdapter(): boolean { return !this.config.tieWordEmbeddings && this.params.tensors.has(loraNames(this.headModule()).a); }

  /**
   * An empty cache for `batch` sequences of up to maxLength tokens, one KVCache per layer; padLengths[b]: the
   * left padding of row b (prompts of different lengths); fusedRotary: see KVCache.
   */
  createCache(batch: number, maxLength: number, padLengths?: readonly number[], fusedRotary = true): KVCache[] {
    const c = this.config;
    return Array.from({ length: c.layers }, () => new KVCache(batch, c.kvHeads, maxLength, c.headDim, padLengths, fusedRotary));
  }

  /** Generation step: logits [B, T, V] of T new tokens after the cache's, whose keys and values it appends. */
  step(ids: Tensor, cache: KVCache[]): Tensor {
    return noGrad(() => this.forward(ids, cache));
  }

  /**
   * Generation step that only predicts: the logits [B, 1, V] of the last of T new tokens (the head runs on the
   * last position only: a prompt of T tokens costs one head row, not T), the cache appended as by step().
   */
  stepLast(ids: Tensor, cache: KVCache[]): Tensor {
    return noGrad(() => {
      const hidden = hiddenStates(this.config, this.params, ids, cache, this.lora); // [B, T, C]
      return this.head(narrow(hidden, 1, hidden.shape[1] - 1, 1)); // [B, 1, V]
    });
  }

  /**
   * Generates up to opts.maxNewTokens tokens after each prompt (token ids). Shorter prompts are left-padded to
   * the longest: padding is invisible to attention and each row's rotary positions start at its first real
   * token, so that a row generates what it would alone. Each step runs the head on the last position only and
   * chooses the tokens on the GPU (one read-back of B ids) or, with sampler 'host', reads back the logits [B, V].
   * EOS and stop strings are checked on the host with the ids read back; the batch stops when every row has
   * stopped. A row that stopped keeps stepping with the batch (its outputs dropped) until at most half of the
   * batch is running: then the finished rows leave the batch and the KV cache (compact, by default), and prompts
   * waiting (opts.batchSize) join it: their prompt pass runs and is read, and the cache is rebuilt with every row's
   * columns right-aligned (KVCache.joined). A row's GPU draws are keyed by its row id and its own token index.
   *
   * The pipelined schedule (GPU sampler, opts.pipelined not false): step s+1 is recorded from step s's ids as they
   * lie on the GPU and submitted before step s is read back (the lookahead), so the device runs s+1 while the
   * host checks s. Once every row has stopped at s the lookahead is discarded (computed: it counts in `steps`). When
   * the rows running after s call for a compaction, the lookahead s+1 (on the old batch) is read and checked first,
   * without a lookahead of its own; the batch is then compacted on the rows running after s+1, and step s+2 is
   * recorded on it as the unpipelined loop records every step; pipelining resumes from s+2. The tokens are those of
   * the unpipelined loop: a row's draws are keyed by its row id and its token index, and its logits do not depend
   * on the rows beside it. `passes` lists what ran, for the audit.
   */
  async generate(prompts: readonly ArrayLike<number>[], opts: GenerationOptions): Promise<Generation> {
    const { maxNewTokens, eosTokenIds = [], stopStrings = [], decoder, sampler = 'gpu', compact = true, fusedRotary = true, pipelined = pipelinedByDefault() } = opts;
    const V = this.config.vocabSize, B = prompts.length, batchSize = opts.batchSize ?? B;
    checkSamplingOptions(opts);
    if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new SamplingError(`generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new SamplingError(`generate: batchSize must be a positive integer, got ${batchSize}`);
    if (stopStrings.length > 0 && !decoder) throw new SamplingError('generate: stop strings need a decoder (a tokenizer) to read the text');
    if (stopStrings.some((s) => s.length === 0)) throw new SamplingError('generate: a stop string must not be empty');
    if (B === 0 || prompts.some((p) => p.length === 0)) throw new SamplingError('generate: needs at least one prompt, and no empty prompt');
    for (const p of prompts) for (const id of Array.from(p)) if (!Number.isInteger(id) || id < 0 || id >= V) throw new SamplingError(`generate: prompt token ${id} outside the vocabulary [0, ${V})`);
    if (sampler !== 'gpu' && sampler !== 'host') throw new SamplingError(`generate: sampler must be 'gpu' or 'host', got ${String(sampler)}`);
    const rowIds = opts.rowIds ?? prompts.map((_, b) => b);
    if (rowIds.length !== B || rowIds.some((r) => !Number.isInteger(r) || r < 0 || r > 0x7fffffff)) throw new SamplingError(`generate: rowIds must be ${B} non-negative 31-bit integers`);

    const rows: GeneratedRow[] = prompts.map(() => ({ tokens: [], finish: 'length' }));
    const timing: GenerationTiming = { promptTokens: prompts.reduce((n, p) => n + p.length, 0), promptSeconds: 0, decodeTokens: 0, decodeSeconds: 0, recordSeconds: 0 };
    const decode = (tokens: number[]) => decoder!.decode(tokens, { skipSpecialTokens: true });
    const sampling = { temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1, seed: opts.seed ?? 0 };
    const random = rng(sampling.seed);
    const passes = new Map<string, GenerationPass>();
    let steps = 0;
    // batch[j]: the prompt in batch row j (the first batchSize at first; the running ones and the joiners later).
    let batch = prompts.slice(0, batchSize).map((_, b) => b);
    const queue = prompts.slice(batchSize).map((_, i) => batchSize + i);
    const firstBatch = leftPadded(batch.map((b) => prompts[b]));
    // The last new token is never fed back: the cache holds the prompt and maxNewTokens - 1 tokens.
    let cache = maxNewTokens > 0 ? this.createCache(batch.length, firstBatch.longest + maxNewTokens - 1, firstBatch.padLengths, fusedRotary) : [];
    let input = Tensor.fromArray(firstBatch.ids, [batch.length, firstBatch.longest], 'i32');
    // The GPU generator's (row id, step of the row's first token) of each of these prompts, for a pass at `step`.
    const countersOf = (members: readonly number[], step: number) => Tensor.fromArray(members.flatMap((b) => [rowIds[b], step - rows[b].tokens.length]), [members.length, 2], 'i32');
    let counterRows = sampler === 'gpu' ? countersOf(batch, 0) : undefined;
    // Records model step `step` on a batch from its input. gpu: ids [b] (fed back as the next input); host: the last
    // position's logits [b, 1, V].
    const record = (step: number, x: Tensor, layers: KVCache[], counters: Tensor | undefined) => {
      const t0 = performance.now();
      const key = `${x.shape[1]} ${layers[0].length}`;
      const pass = passes.get(key) ?? { count: 0, tokens: x.shape[1], filled: layers[0].length };
      pass.count += x.shape[0];
      passes.set(key, pass);
      const recorded = tidy(() => {
        const logits = this.stepLast(x, layers);
        return counters ? sampleTokens(logits.reshape([-1, V]), counters, { ...sampling, step }) : logits;
      });
      timing.recordSeconds += (performance.now() - t0) / 1000;
      return recorded;
    };
    // Takes a step's tokens (or logits) read back for the prompts in `members`, in order.
    const take = (values: Awaited<ReturnType<Tensor['toArray']>>, members: readonly number[], promptPass: boolean) => {
      for (const [j, b] of members.entries()) {
        const row = rows[b];
        if (!runs(b)) continue; // a row runs until it stops or reaches the length
        row.tokens.push(counterRows ? values[j] : sampleToken(values.subarray(j * V, (j + 1) * V), opts, random));
        if (!promptPass) timing.decodeTokens++;
        if (eosTokenIds.includes(row.tokens[row.tokens.length - 1])) row.finish = 'eos';
        // A stop string may span tokens, and a token's text may depend on its neighbours: decode the whole row.
        else if (stopStrings.length > 0 && stopIndex(decode(row.tokens), stopStrings) >= 0) row.finish = 'stop';
      }
    };
    const runs = (b: number) => rows[b].finish === 'length' && rows[b].tokens.length < maxNewTokens;
    const runningRows = () => [...batch.keys()].filter((j) => runs(batch[j]));
    const compactionDue = (running: number[]) => compact && running.length <= batch.length / 2;
    // The prompt pass of prompts joining the batch, read: their caches, holding their prompts.
    const join = async (joiners: readonly number[]) => {
      const { ids, longest, padLengths } = leftPadded(joiners.map((b) => prompts[b]));
      const layers = this.createCache(joiners.length, longest, padLengths, fusedRotary);
      const x = Tensor.fromArray(ids, [joiners.length, longest], 'i32');
      const counters = counterRows ? countersOf(joiners, steps) : undefined;
      try {
        const logits = record(steps, x, layers, counters);
        const values = await logits.toArray();
        logits.dispose();
        steps++;
        take(values, joiners, true);
      } catch (e) {
        for (const layer of layers) layer.dispose();
        throw e;
      } finally {
        x.dispose();
        counters?.dispose();
      }
      return layers;
    };
    // out: the recorded step read next (step `steps`); lookahead: the step recorded after it, read in the next turn.
    let out: Tensor | undefined, lookahead: Tensor | undefined;
    try {
      const start = performance.now();
      out = maxNewTokens > 0 ? record(0, input, cache, counterRows) : undefined;
      while (out) {
        // Starts the read: the copy is recorded behind this step and submitted with it at once, so the wait covers
        // this step only, not a lookahead recorded after it.
        const reading = out.toArray();
        reading.catch(() => {}); // awaited below: a throw while recording the lookahead must not leave it unhandled
        input.dispose();
        if (counterRows) input = out.reshape([batch.length, 1]); // the sampled ids are the next input as they lie
        const before = runningRows();
        const ahead = before.some((j) => rows[batch[j]].tokens.length + 2 <= maxNewTokens); // a row would take the lookahead's token
        lookahead = pipelined && counterRows && ahead && !compactionDue(before) ? record(steps + 1, input, cache, counterRows) : undefined;
        if (lookahead) flush();
        const values = await reading;
        out.dispose();
        const promptPass = ++steps === 1;
        take(values, batch, promptPass);
        if (promptPass) timing.promptSeconds = (performance.now() - start) / 1000;
        const running = runningRows();
        if (running.length === 0 && lookahead) { // discarded, but computed on the device: it counts
          lookahead.dispose();
          lookahead = undefined;
          steps++;
        }
        if (running.length === 0 && queue.length === 0) break;
        // The lookahead ran on this batch: it is read before any compaction (compactionDue stops the next lookahead).
        if (lookahead) { out = lookahead; continue; }
        const compacting = running.length === 0 || compactionDue(running);
        if (compacting) {
          const parts = [{ layers: cache, rows: running }];
          let members = running.map((j) => batch[j]);
          while (queue.length > 0 && (members.length === 0 || members.length <= batchSize / 2)) {
            const joiners = queue.splice(0, batchSize - members.length);
            const layers = await join(joiners);
            parts.push({ layers, rows: [...joiners.keys()].filter((i) => runs(joiners[i])) });
            members = [...members, ...joiners.filter(runs)];
          }
          const joined = members.length === 0 ? [] : KVCache.joined(parts, Math.max(...members.map((b) => maxNewTokens - rows[b].tokens.length)));
          for (const p of parts) for (const layer of p.layers) layer.dispose();
          cache = joined;
          batch = members;
          if (batch.length === 0) break;
          if (counterRows) { counterRows.dispose(); counterRows = countersOf(batch, steps); }
        }
        if (compacting || !counterRows) {
          input.dispose();
          input = Tensor.fromArray(batch.map((b) => rows[b].tokens[rows[b].tokens.length - 1]), [batch.length, 1], 'i32');
        }
        out = record(steps, input, cache, counterRows);
      }
      timing.decodeSeconds = (performance.now() - start) / 1000 - timing.promptSeconds;
    } finally {
      out?.dispose();
      lookahead?.dispose();
      input.dispose();
      counterRows?.dispose();
      for (const layer of cache) layer.dispose();
    }
    if (decoder) {
      for (const row of rows) {
        const text = decode(row.finish === 'eos' ? row.tokens.slice(0, -1) : row.tokens);
        row.text = row.finish === 'stop' ? text.slice(0, stopIndex(text, stopStrings)) : text;
      }
    }
    return { rows, steps, passes: [...passes.values()], timing };
  }

  /** Greedy decoding without EOS: each prompt followed by maxNewTokens argmax tokens (the first on ties, as torch.argmax). */
  async greedy(prompts: Int32Array[], maxNewTokens: number): Promise<Int32Array[]> {
    const { rows } = await this.generate(prompts, { maxNewTokens });
    return rows.map((row, b) => Int32Array.from([...prompts[b], ...row.tokens]));
  }

  dispose(): void { this.params.dispose(); }
}

/**
 * Whether generation pipelines its steps unless told: where the device is not this machine's CPU. On lavapipe the host's
 * checks run on the device's own cores, so a lookahead overlaps nothing (0.96x, bench/RESULTS.md) and the step
 * computed after the last row stops is wasted (4% of the demo's generation FLOPs).
 */
export function pipelinedByDefault(): boolean { return !gpu().onHostCpu; }

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
