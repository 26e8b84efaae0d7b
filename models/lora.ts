// LoRA (Hu et al. 2021, as PEFT lays it out): which linear layers of an architecture get adapters, the
// adapters' parameter table with PEFT's names (so that a PEFT adapter_model.safetensors loads by lookup and the
// memory plan can be printed), and the adapted forward of a Linear:
//
//   y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ,   s = alpha / r (rsLoRA: alpha / sqrt(r))
//
// A base Linear `<module>.weight` [out, in] gets `base_model.model.<module>.lora_A.weight` [r, in] and
// `base_model.model.<module>.lora_B.weight` [out, r]; the base itself is frozen (f32 or 16-bit storage).
// Adapters live in the model's ParameterSet beside the frozen base, so the optimizer's entries (the table's
// trainable rows) are exactly the adapters. Saving, loading and merging: models/peft.ts.
import { autocastF16, gradEnabled } from '../engine/autodiff.ts';
import { isMatrix, param, type ParameterSet, type ParamSpec } from '../engine/params.ts';
import type { Tensor } from '../engine/tensor.ts';
import { activation } from '../engine/ops/activations.ts';
import { castF16 } from '../engine/ops/cast.ts';
import { dropout } from '../engine/ops/dropout.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { linear, type LinearOptions } from '../engine/ops/matmul.ts';
import { modelParams, type ModelConfig, type ModelType } from './config.ts';

/** PEFT's target module names (the last component of a Linear's name) per architecture, the output head included. */
export const LORA_TARGET_MODULES: Record<ModelType, readonly string[]> = {
  gpt_neox: ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h', 'embed_out'],
  mistral: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
};

/** PEFT's defaults when no target is given (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
export const DEFAULT_LORA_TARGETS: Record<ModelType, readonly string[]> = {
  gpt_neox: ['query_key_value'],
  mistral: ['q_proj', 'v_proj'],
};

/** Module names, or 'all-linear': every Linear but the output head (PEFT's meaning). */
export type LoraTargets = readonly string[] | 'all-linear';

export interface LoraOptions { r: number; targets?: LoraTargets }

export class LoraError extends Error {
  constructor(message: string) { super(message); this.name = 'LoraError'; }
}

/** PEFT's prefix of every adapter name: the wrapped model's own parameter names follow it. */
export const PEFT_PREFIX = 'base_model.model.';

/** The target module names that `targets` stands for in this architecture. */
export function loraTargetModules(config: ModelConfig, targets: LoraTargets = DEFAULT_LORA_TARGETS[config.modelType]): string[] {
  const known = LORA_TARGET_MODULES[config.modelType];
  if (targets === 'all-linear') return known.filter((m) => m !== 'embed_out' && m !== 'lm_head');
  const unknown = targets.filter((t) => !known.includes(t));
  if (unknown.length > 0) throw new LoraError(`LoRA targets ${unknown.map((t) => `'${t}'`).join(', ')} are no ${config.modelType} module; known: ${known.join(', ')} or 'all-linear'`);
  if (targets.length === 0) throw new LoraError('LoRA needs at least one target module');
  return [...new Set(targets)];
}

/**
 * The adapters' table: for every Linear of the model whose module name is a target, lora_A [r, in] and lora_B
 * [out, r] in f32, trainable, adapter = true, in the base table's order. A target absent from the model (the
 * head of a tied model) adds nothing.
 */
export function loraParamSpecs(config: ModelConfig, opts: LoraOptions): ParamSpec[] {
  const { r } = opts;
  if (!Number.isSafeInteger(r) || r < 1) throw new LoraError(`LoRA rank r must be a positive integer, got ${r}`);
  const modules = new Set(loraTargetModules(config, opts.targets));
  const specs: ParamSpec[] = [];
  for (const s of modelParams(config)) {
    if (!isMatrix(s) || s.role === 'embedding' || !s.name.endsWith('.weight')) continue;
    const module = s.name.slice(0, -'.weight'.length);
    if (!modules.has(module.slice(module.lastIndexOf('.') + 1))) continue;
    const [out, inFeatures] = s.shape;
    const adapter = { trainable: true, adapter: true };
    specs.push(
      param(`${PEFT_PREFIX}${module}.lora_A.weight`, [r, inFeatures], 'weight', adapter),
      param(`${PEFT_PREFIX}${module}.lora_B.weight`, [out, r], 'weight', adapter),
    );
  }
  return specs;
}

/** The base table frozen, as LoRA trains it: no gradients or optimizer states for any base tensor. */
export function frozenBase(specs: readonly ParamSpec[]): ParamSpec[] {
  return specs.map((s) => ({ ...s, trainable: false }));
}

/** The adapter names of a base Linear module (its weight without `.weight`). */
export function loraNames(module: string): { a: string; b: string } {
  return { a: `${PEFT_PREFIX}${module}.lora_A.weight`, b: `${PEFT_PREFIX}${module}.lora_B.weight` };
}

/** What adapter_config.json says, in juice's names. */
export interface LoraConfig {
  r: number;
  alpha: number;
  /** Dropout probability on each adapter's input while training (PEFT's lora_dropout; the paper's 0.05). */
  dropout: number;
  /** Module names (the last component of a Linear's name), as PEFT's target_modules. */
  targetModules: string[];
  /** rsLoRA (Kalajdzievski 2023): scale alpha / sqrt(r) instead of alpha / r. */
  useRslora: boolean;
  /** PEFT's base_model_name_or_path: where the base came from (informational). */
  baseModel: string;
}

/** The adapter's scale s in y = x Wᵀ + s · x Aᵀ Bᵀ: alpha / r, or alpha / sqrt(r) with rsLoRA. */
export function loraScaling(c: Pick<LoraConfig, 'r' | 'alpha' | 'useRslora'>): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

/** FNV-1a of a module name: the dropout stream of its adapter, stable whatever order the modules run in. */
function streamOf(module: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < module.length; i++) h = Math.imul(h ^ module.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The adapted forward's settings and its dropout state. Dropout applies only while `training` is set and a
 * tape is recorded (never under noGrad: evaluation, generation). Its mask is a function of (seed, counter,
 * module): the trainer advances `counter` once per forward (micro-batch), and a resumed run that sets the same
 * seed and counter draws the same masks.
 */
export class LoraState {
  training = false;
  counter = 0;
  constructor(readonly config: LoraConfig, public seed = 0) {
    if (!(config.dropout >= 0 && config.dropout < 1)) throw new LoraError(`LoRA dropout must be in [0, 1), got ${config.dropout}`);
  }

  get scaling(): number { return loraScaling(this.config); }

  /** The adapter input of `module`: x, or dropout(x) while training, its mask keyed by `counter`. */
  adapterInput(x: Tensor, module: string, counter = this.counter): Tensor {
    const p = this.config.dropout;
    if (!this.training || p === 0 || !gradEnabled()) return x;
    return dropout(x, { p, seed: this.seed, counter, stream: streamOf(module) });
  }
}

/**
 * A model's Linear `module` (its path, the weight without `.weight`) applied to x [..., in]: [..., out], then the
 * activation and the residual [..., out] where given (linear's LinearOptions).
 */
export type Projection = (x: Tensor, module: string, bias?: Tensor, opts?: Pick<LinearOptions, 'residual' | 'activation'>) => Tensor;

/**
 * The models' linear layers: linear(x, W, b), plus s · dropout(x) Aᵀ Bᵀ where the ParameterSet holds the
 * module's lora_A and lora_B. The two thin products are charged as loraDown and loraUp in the ledger; the
 * scale is applied to the rank-r intermediate (r elements per row, not out). Inside autocast (mixed precision) every
 * product reads f16 copies of its f32 weight and input (engine/ops/cast.ts); the bias and the sums stay f32.
 */
export function projections(p: ParameterSet, lora?: LoraState): Projection {
  // Read once per forward, so that a checkpointed layer replayed in the backward draws the forward's masks.
  const counter = lora?.counter;
  const half = autocastF16();
  const operand = (t: Tensor) => (half && t.dtype === 'f32' ? castF16(t) : t); // mixed precision's f16 copies
  const product = (x: Tensor, w: Tensor, bias?: Tensor, opts?: LinearOptions) => linear(operand(x), operand(w), bias, opts);
  return (x, module, bias, opts = {}) => {
    const names = loraNames(module);
    if (!p.tensors.has(names.a)) return product(x, p.get(`${module}.weight`), bias, opts); // [..., out]
    if (!lora) throw new LoraError(`'${names.a}' is in the parameter table but the model has no LoRA settings (scale, dropout): attach adapters with models/peft.ts`);
    // The activation applies to base + adapter, so it and a residual beside it follow the sum.
    const { residual, activation: fn } = opts;
    const base = product(x, p.get(`${module}.weight`), bias, { residual: fn ? undefined : residual });
    const down = product(lora.adapterInput(x, module, counter), p.get(names.a), undefined, { op: 'loraDown' }); // [..., r]
    const adapted = add(base, product(scale(down, lora.scaling), p.get(names.b), undefined, { op: 'loraUp' }));
    if (!fn) return adapted;
    return residual ? add(activation(fn, adapted), residual) : activation(fn, adapted);
  };
}
