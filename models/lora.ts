// The LoRA plan (Hu et al. 2021, as PEFT lays it out): which linear layers of an architecture get adapters,
// and the adapters' parameter table with PEFT's names, so that the memory plan can be printed and a PEFT
// adapter_model.safetensors loaded by lookup. The adapted forward, W x + (alpha / r) B A x, comes later.
//
// A base Linear `<module>.weight` [out, in] gets `base_model.model.<module>.lora_A.weight` [r, in] and
// `base_model.model.<module>.lora_B.weight` [out, r]; the base itself is frozen.
import { isMatrix, param, type ParamSpec } from '../engine/params.ts';
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
