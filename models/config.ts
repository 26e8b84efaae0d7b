// A Hugging Face `config.json` for GPT-NeoX (Pythia) or Mistral, parsed into one typed config.
//
// Both layouts parse to the same config: the classic one real checkpoints ship (NeoX `rotary_pct`,
// `rotary_emb_base`; Mistral `rope_theta`) and transformers 5's (`rope_parameters`). Options that
// transformers defaults take transformers' defaults; options we do not implement are a ConfigError,
// never a silent approximation.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { param, type ParamSpec } from '../engine/params.ts';
import { parseStrictJson, resolveInFolder, StrictJsonError, type StrictJson } from '../engine/safetensors.ts';
import { numelOf } from '../engine/tensor.ts';
import type { ModelConfig } from './config_types.ts';
import { gptNeoxParams, gptNeoxTrunkParams } from './gpt_neox_params.ts';
import { mistralParams, mistralTrunkParams } from './mistral_params.ts';

export type { ModelConfig, ModelType } from './config_types.ts';

/** A config.json we cannot load exactly; names the file, the field (null: the whole file) and the value. */
export class ConfigError extends Error {
  constructor(readonly file: string, readonly field: string | null, readonly value: unknown, reason: string) {
    super(field === null ? `${file}: ${reason}` : `${file}: ${field} = ${JSON.stringify(value) ?? 'undefined'}: ${reason}`);
    this.name = 'ConfigError';
  }
}

export const CONFIG_FILE = 'config.json';

/**
 * The largest value juice accepts for each size in a config.json, checked before anything is allocated or looped
 * over (a corrupt `num_hidden_layers: 1e12` must fail at once, not after building a trillion-row table). Each is
 * well above every released model of the two families (Mistral-7B: 32 layers, hidden 4096, 32 heads, intermediate
 * 14336, vocab 32000, 32768 positions).
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 4096,
  intermediate_size: 1 << 20,
  vocab_size: 1 << 22,
  max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
  /** Token ids are int32 on the device. */
  token_id: 2 ** 31 - 1,
} as const;

/** All weights of a model as f32 on the host must fit in this many bytes (1 TiB). */
export const HOST_BUDGET_BYTES = 2 ** 40;
/** The largest host buffer Node allocates (buffer.constants.MAX_LENGTH, 4 GiB on Node 20): one tensor as f32 must fit. */
export const MAX_TENSOR_BYTES = 2 ** 32;

/** Reads and parses `dir/config.json` (or `dir` itself when it names a .json file). */
export function loadConfig(dir: string): ModelConfig {
  const file = dir.endsWith('.json') ? dir : path.join(dir, CONFIG_FILE);
  if (file !== dir && fs.existsSync(dir)) {
    // A folder's config.json must be a regular file inside it (a link out of the folder is refused).
    const { problem } = resolveInFolder(dir, CONFIG_FILE);
    if (problem !== null && fs.existsSync(file)) throw new ConfigError(file, null, null, problem);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, null, null, `cannot read: ${(e as Error).message}`);
  }
  let parsed: StrictJson;
  try {
    parsed = parseStrictJson(text); // duplicate keys refused: JSON.parse would keep the last one silently
  } catch (e) {
    if (!(e instanceof StrictJsonError)) throw e;
    throw new ConfigError(file, null, null, `not valid JSON: ${e.message}`);
  }
  // A size written 64.0 is a float to transformers (Python's json): refused where an integer is read.
  const floats = new Map(parsed.nonIntegers.map(({ path: p, token }) => [String(p[0]), token]));
  return parseConfig(parsed.value, file, floats);
}

/** Field readers that throw a ConfigError naming the file, the field and the value. */
class Fields {
  /** floats: the fields (top-level keys) holding a number written with a fraction or exponent, and that token. */
  constructor(readonly file: string, readonly json: Record<string, unknown>, private readonly floats: ReadonlyMap<string, string> = new Map()) {}

  /** Refuses an integer field written as a float (64.0, 1e3): transformers would read a float. */
  private integerText(field: string, what: string): void {
    const token = this.floats.get(field);
    if (token !== undefined) this.fail(field, `must be ${what}, written without a fraction or exponent (the file says ${token})`);
  }

  /** Present and not null (transformers treats null as "use the default"). */
  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  fail(field: string, reason: string, value: unknown = this.json[field]): never {
    throw new ConfigError(this.file, field, value, reason);
  }

  /** A size: a positive integer at most `max` (juice's limit, CONFIG_LIMITS). */
  positiveInt(field: string, max: number, fallback?: number): number {
    const v = this.json[field] ?? fallback;
    if (v === undefined) this.fail(field, 'required (a positive integer)');
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, 'must be a positive integer');
    this.integerText(field, 'a positive integer');
    if (v > max) this.fail(field, `must be at most ${max} (juice's limit for ${field})`);
    return v;
  }

  /** `value` is passed for nested fields such as rope_parameters.rope_theta. */
  positiveNumber(field: string, fallback: number, value: unknown = this.json[field]): number {
    const v = value ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(field, 'must be a positive number', value);
    return v;
  }

  boolean(field: string, fallback: boolean): boolean {
    const v = this.json[field] ?? fallback;
    if (typeof v !== 'boolean') this.fail(field, 'must be true or false');
    return v;
  }

  /** A token id: absent -> the transformers default, null -> none. */
  tokenId(field: string, fallback: number | null): number | null {
    const v = this.json[field];
    if (v === undefined) return fallback;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(field, 'must be a non-negative integer or null');
    this.integerText(field, 'a non-negative integer or null');
    if (v > CONFIG_LIMITS.token_id) this.fail(field, `must be at most ${CONFIG_LIMITS.token_id} (token ids are int32)`);
    return v;
  }

  tokenIds(field: string, fallback: number | null): number | number[] | null {
    const v = this.json[field];
    if (!Array.isArray(v)) return this.tokenId(field, fallback);
    if (v.length === 0 || !v.every((id) => Number.isSafeInteger(id) && id >= 0 && id <= CONFIG_LIMITS.token_id)) {
      this.fail(field, `must be a non-negative integer at most ${CONFIG_LIMITS.token_id}, a non-empty list of them, or null`);
    }
    this.integerText(field, 'a list of non-negative integers');
    return v as number[];
  }

  oneOf<T extends string>(field: string, allowed: readonly T[], fallback: T, reason: string): T {
    const v = this.json[field] ?? fallback;
    if (!allowed.includes(v as T)) this.fail(field, reason);
    return v as T;
  }
}

interface Rope { theta: number; partialRotaryFactor: number }

const ROPE_PARAMETER_KEYS = ['rope_type', 'type', 'rope_theta', 'partial_rotary_factor'];

/**
 * RoPE from transformers 5's `rope_parameters` or the classic fields; when both are present they
 * must agree. Only rope_type 'default' (no scaling) is implemented.
 */
function parseRope(f: Fields, classicTheta: string, classicPartial: string | null, defaultTheta: number): Rope {
  const scaling = f.json.rope_scaling;
  if (scaling !== undefined && scaling !== null) f.fail('rope_scaling', 'rope scaling is not implemented (only unscaled rope_type "default")');
  const classic: Rope = {
    theta: f.positiveNumber(classicTheta, defaultTheta),
    partialRotaryFactor: classicPartial === null ? 1 : f.positiveNumber(classicPartial, 0.25),
  };
  const rp = f.json.rope_parameters;
  if (rp === undefined || rp === null) return classic;
  if (typeof rp !== 'object' || Array.isArray(rp)) f.fail('rope_parameters', 'must be an object');
  const params = rp as Record<string, unknown>;
  const ropeType = params.rope_type ?? params.type ?? 'default';
  if (ropeType !== 'default') f.fail('rope_parameters.rope_type', 'only "default" (unscaled RoPE) is implemented', ropeType);
  for (const key of Object.keys(params)) {
    if (!ROPE_PARAMETER_KEYS.includes(key)) f.fail(`rope_parameters.${key}`, 'is a RoPE option we do not implement', params[key]);
  }
  const rope: Rope = {
    theta: f.positiveNumber('rope_parameters.rope_theta', classic.theta, params.rope_theta),
    partialRotaryFactor: f.positiveNumber('rope_parameters.partial_rotary_factor', classic.partialRotaryFactor, params.partial_rotary_factor),
  };
  if (f.has(classicTheta) && rope.theta !== classic.theta) f.fail(classicTheta, `disagrees with rope_parameters.rope_theta = ${rope.theta}`);
  if (classicPartial !== null && f.has(classicPartial) && rope.partialRotaryFactor !== classic.partialRotaryFactor) {
    f.fail(classicPartial, `disagrees with rope_parameters.partial_rotary_factor = ${rope.partialRotaryFactor}`);
  }
  return rope;
}

/** ...ForCausalLM or ...ForSequenceClassification with one label; no `architectures` means a causal LM. */
function parseHead(f: Fields): 'lm' | 'score' {
  const archs = f.json.architectures;
  if (archs === undefined || archs === null) return 'lm';
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') f.fail('architectures', 'must name exactly one architecture');
  const arch = archs[0] as string;
  if (arch.endsWith('ForCausalLM')) return 'lm';
  if (!arch.endsWith('ForSequenceClassification')) f.fail('architectures', 'only ...ForCausalLM and ...ForSequenceClassification (a reward model) are implemented');
  const labels = f.json.num_labels ?? (f.json.id2label ? Object.keys(f.json.id2label as object).length : 2);
  if (labels !== 1) f.fail(f.has('num_labels') ? 'num_labels' : 'id2label', 'a sequence classifier must have exactly one label (a scalar reward)', f.json.num_labels ?? f.json.id2label);
  return 'score';
}

/** transformers' rotary width int(headDim * factor), which rotate-half needs even. */
function rotaryDimsOf(f: Fields, field: string, headDim: number, factor: number): number {
  if (factor > 1) f.fail(field, 'must be at most 1', factor);
  const dims = Math.trunc(headDim * factor);
  if (dims % 2 !== 0) f.fail(field, `gives an odd rotary width ${dims} of head_dim ${headDim}; rotate-half needs an even one`, factor);
  return dims;
}

function parseGptNeox(f: Fields, head: 'lm' | 'score'): ModelConfig {
  const hidden = f.positiveInt('hidden_size', CONFIG_LIMITS.hidden_size);
  const heads = f.positiveInt('num_attention_heads', CONFIG_LIMITS.num_attention_heads);
  const headDim = hidden / heads;
  if (!Number.isInteger(headDim)) f.fail('num_attention_heads', `must divide hidden_size ${hidden} (GPT-NeoX's head_dim is hidden_size / heads)`);
  // GPT-NeoX has no separate head_dim option; one that disagrees would change the model.
  if (f.has('head_dim') && f.json.head_dim !== headDim) f.fail('head_dim', `head_dim * num_attention_heads must equal hidden_size ${hidden}`);
  const rope = parseRope(f, 'rotary_emb_base', 'rotary_pct', 10000);
  const partialField = f.has('rotary_pct') ? 'rotary_pct' : 'rope_parameters.partial_rotary_factor';
  return {
    modelType: 'gpt_neox',
    head,
    vocabSize: f.positiveInt('vocab_size', CONFIG_LIMITS.vocab_size),
    hidden,
    layers: f.positiveInt('num_hidden_layers', CONFIG_LIMITS.num_hidden_layers),
    heads,
    kvHeads: heads,
    headDim,
    intermediate: f.positiveInt('intermediate_size', CONFIG_LIMITS.intermediate_size),
    rotaryDims: rotaryDimsOf(f, partialField, headDim, rope.partialRotaryFactor),
    ropeTheta: rope.theta,
    eps: f.positiveNumber('layer_norm_eps', 1e-5),
    maxPositions: f.positiveInt('max_position_embeddings', CONFIG_LIMITS.max_position_embeddings),
    slidingWindow: null,
    parallelResidual: f.boolean('use_parallel_residual', true),
    tieWordEmbeddings: f.boolean('tie_word_embeddings', false),
    hiddenAct: f.oneOf('hidden_act', ['gelu'], 'gelu', 'GPT-NeoX is implemented with exact (erf) "gelu" only'),
    attentionBias: f.boolean('attention_bias', true),
    bosTokenId: f.tokenId('bos_token_id', 0),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', null),
  };
}

function parseMistral(f: Fields, head: 'lm' | 'score'): ModelConfig {
  const hidden = f.positiveInt('hidden_size', CONFIG_LIMITS.hidden_size);
  const heads = f.positiveInt('num_attention_heads', CONFIG_LIMITS.num_attention_heads);
  const kvHeads = f.positiveInt('num_key_value_heads', CONFIG_LIMITS.num_key_value_heads, heads);
  if (heads % kvHeads !== 0) f.fail('num_key_value_heads', `must divide num_attention_heads ${heads}`);
  const defaultHeadDim = hidden / heads;
  if (!f.has('head_dim') && !Number.isInteger(defaultHeadDim)) f.fail('num_attention_heads', `must divide hidden_size ${hidden} when head_dim is not given`);
  const headDim = f.positiveInt('head_dim', CONFIG_LIMITS.head_dim, defaultHeadDim);
  const rope = parseRope(f, 'rope_theta', null, 10000);
  if (rope.partialRotaryFactor !== 1) f.fail('rope_parameters.partial_rotary_factor', 'Mistral rotates whole heads; partial rotary is not implemented', rope.partialRotaryFactor);
  return {
    modelType: 'mistral',
    head,
    vocabSize: f.positiveInt('vocab_size', CONFIG_LIMITS.vocab_size),
    hidden,
    layers: f.positiveInt('num_hidden_layers', CONFIG_LIMITS.num_hidden_layers),
    heads,
    kvHeads,
    headDim,
    intermediate: f.positiveInt('intermediate_size', CONFIG_LIMITS.intermediate_size),
    rotaryDims: headDim,
    ropeTheta: rope.theta,
    eps: f.positiveNumber('rms_norm_eps', 1e-6),
    maxPositions: f.positiveInt('max_position_embeddings', CONFIG_LIMITS.max_position_embeddings),
    // Absent: transformers' default 4096; null: no window.
    slidingWindow: f.json.sliding_window === null ? null : f.positiveInt('sliding_window', CONFIG_LIMITS.sliding_window, 4096),
    parallelResidual: false,
    tieWordEmbeddings: f.boolean('tie_word_embeddings', false),
    hiddenAct: f.oneOf('hidden_act', ['silu'], 'silu', 'Mistral is implemented with "silu" (SwiGLU) only'),
    attentionBias: false,
    bosTokenId: f.tokenId('bos_token_id', 1),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', null),
  };
}

/** Parses a config.json object; `file` names it in errors. */
export function parseConfig(json: unknown, file: string, floats?: ReadonlyMap<string, string>): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(file, null, json, 'must be a JSON object');
  const f = new Fields(file, json as Record<string, unknown>, floats);
  const modelType = f.json.model_type;
  const cfg = modelType === 'gpt_neox' ? parseGptNeox(f, parseHead(f))
    : modelType === 'mistral' ? parseMistral(f, parseHead(f))
      : f.fail('model_type', 'unknown model type (implemented: "gpt_neox", "mistral")');
  checkSizes(cfg, file);
  return cfg;
}

/**
 * The products of the bounded sizes: every tensor of the table as f32 fits one host buffer, and all of them the
 * host budget. Each size is bounded already, so building the table (at most ~12k rows) is cheap.
 */
function checkSizes(cfg: ModelConfig, file: string): void {
  let total = 0;
  for (const s of modelParams(cfg)) {
    const bytes = 4 * numelOf(s.shape);
    if (bytes > MAX_TENSOR_BYTES) {
      throw new ConfigError(file, null, null, `tensor ${s.name} [${s.shape.join(', ')}] would be ${bytes} bytes as f32, over the ${MAX_TENSOR_BYTES}-byte limit of one host buffer`);
    }
    total += bytes;
  }
  if (total > HOST_BUDGET_BYTES) {
    throw new ConfigError(file, null, null, `the weights would be ${total} bytes as f32 (${total / 4} parameters), over the host budget of ${HOST_BUDGET_BYTES} bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// Parameter tables by head: the trunk is shared, the head is the LM output layer or the score layer.

/** The reward model: trunk + `score.weight` [1, hidden] without bias (transformers' ...ForSequenceClassification). */
export function rewardParams(cfg: ModelConfig): ParamSpec[] {
  const trunk = cfg.modelType === 'gpt_neox' ? gptNeoxTrunkParams(cfg) : mistralTrunkParams(cfg);
  return [...trunk, param('score.weight', [1, cfg.hidden], 'head')];
}

/** The table for the checkpoint this config describes (causal LM or reward model). */
export function modelParams(cfg: ModelConfig): ParamSpec[] {
  if (cfg.head === 'score') return rewardParams(cfg);
  return cfg.modelType === 'gpt_neox' ? gptNeoxParams(cfg) : mistralParams(cfg);
}
