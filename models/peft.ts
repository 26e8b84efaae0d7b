// LoRA adapters in PEFT's format, and merging them into the base: a folder with adapter_config.json and
// adapter_model.safetensors (names `base_model.model.<module>.lora_{A,B}.weight`, models/lora.ts), as
// `PeftModel.from_pretrained` reads and `save_pretrained` writes it.
//
// Adapters are attached to a loaded CausalLM: the base is frozen (f32 or 16-bit storage), lora_A and lora_B
// join its ParameterSet as the only trainable rows, and model.lora holds the scale and the dropout state.
// Merging is W <- W + s·B·A on the GPU in f32 (ledger phase `merge`), rounded to a 16-bit base's dtype when
// written back.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../engine/autodiff.ts';
import { ledger } from '../engine/ledger.ts';
import type { ParamSpec } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../engine/safetensors.ts';
import { Tensor, numelOf, shapeString, tidy } from '../engine/tensor.ts';
import { addInto, scale } from '../engine/ops/elementwise.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { loadConfigFor, type CausalLM } from './causal_lm.ts';
import { CONFIG_FILE, modelParams, type ModelConfig } from './config.ts';
import { LoraError, LoraState, loraNames, loraParamSpecs, loraScaling, loraTargetModules, PEFT_PREFIX, type LoraConfig } from './lora.ts';
import { ModelWeights, WeightsError } from './weights.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** PEFT's defaults for a new adapter (LoraConfig: r 8, lora_alpha 8; lora_dropout 0.05 as the LoRA paper). */
export function loraConfig(model: ModelConfig, opts: Partial<LoraConfig> = {}): LoraConfig {
  const config: LoraConfig = {
    r: opts.r ?? 8, alpha: opts.alpha ?? 8, dropout: opts.dropout ?? 0.05, useRslora: opts.useRslora ?? false,
    targetModules: loraTargetModules(model, opts.targetModules), baseModel: opts.baseModel ?? '',
  };
  checkLoraConfig(config, 'LoRA config');
  return config;
}

/** The largest rank accepted: far above any useful adapter, and it bounds what a config can make us allocate. */
export const MAX_LORA_RANK = 65536;

function checkLoraConfig(c: LoraConfig, where: string): void {
  const bad = (field: string, value: unknown, want: string) => new LoraError(`${where}: field '${field}' is ${JSON.stringify(value)}; ${want}`);
  if (!Number.isSafeInteger(c.r) || c.r < 1 || c.r > MAX_LORA_RANK) throw bad('r', c.r, `the rank must be an integer in [1, ${MAX_LORA_RANK}]`);
  if (!Number.isFinite(c.alpha)) throw bad('lora_alpha', c.alpha, 'must be a number');
  if (!(c.dropout >= 0 && c.dropout < 1)) throw bad('lora_dropout', c.dropout, 'must be in [0, 1)');
}

/** The adapter's table for `model`: lora_A [r, in], lora_B [out, r] of every targeted Linear, in the base's order. */
export function adapterSpecs(model: ModelConfig, lora: LoraConfig): ParamSpec[] {
  return loraParamSpecs(model, { r: lora.r, targets: lora.targetModules });
}

/**
 * Initial adapters as PEFT makes them (init_lora_weights=True): A by kaiming_uniform_(a=√5), which is
 * U(-1/√in, 1/√in) (gain √(2/(1+5)) = 1/√3, bound = √3·gain/√fan_in), and B = 0, so the adapted model starts
 * equal to the base.
 */
export function initialAdapters(specs: readonly ParamSpec[], seed: number): Map<string, Float32Array> {
  const random = rng(seed);
  return new Map(specs.map((s) => {
    if (s.name.endsWith('.lora_B.weight')) return [s.name, new Float32Array(numelOf(s.shape))];
    const bound = 1 / Math.sqrt(s.shape[1]);
    return [s.name, Float32Array.from({ length: numelOf(s.shape) }, () => bound * (2 * random.next() - 1))];
  }));
}

/**
 * Attaches adapters to a loaded model: freezes every base tensor, adds lora_A / lora_B (trainable, f32) with
 * the given values (initialAdapters by default, from `seed`), and sets model.lora. Afterwards
 * model.params.entries() are exactly the adapters.
 */
export function attachLora(model: CausalLM, lora: LoraConfig, values?: Map<string, Float32Array>, seed = 0): void {
  if (model.lora) throw new LoraError('the model already has LoRA adapters; merge or load the model again first');
  const specs = adapterSpecs(model.config, lora);
  const data = values ?? initialAdapters(specs, seed);
  model.params.freeze('*');
  model.params.add(specs, (s) => data.get(s.name)!);
  model.lora = new LoraState(lora, seed);
}

/** adapter_config.json of `dir`, checked: a LoRA adapter juice can apply, with every refusal naming file, field and value. */
export function readLoraConfig(dir: string, model: ModelConfig): LoraConfig {
  const file = join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(file)) throw new LoraError(`${dir}: no ${ADAPTER_CONFIG_FILE} (a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`);
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new LoraError(`${file}: invalid JSON: ${(e as Error).message}`); }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new LoraError(`${file}: must hold a JSON object, not ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`);
  const bad = (field: string, want: string) => new LoraError(`${file}: field '${field}' is ${JSON.stringify(raw[field])}; ${want}`);
  if (raw.peft_type !== 'LORA') throw bad('peft_type', 'juice applies LoRA adapters only ("LORA")');
  if ((raw.bias ?? 'none') !== 'none') throw bad('bias', 'juice trains no biases in adapters: only "none" is supported');
  if (raw.fan_in_fan_out === true) throw bad('fan_in_fan_out', 'the weights are transformers Linear [out, in]: only false is supported');
  if (raw.task_type !== undefined && raw.task_type !== null && raw.task_type !== 'CAUSAL_LM') throw bad('task_type', 'a causal LM adapter ("CAUSAL_LM") is needed');
  if (raw.modules_to_save !== undefined && raw.modules_to_save !== null) throw bad('modules_to_save', 'fully trained modules beside the adapters are not supported (null)');
  if (raw.use_dora === true) throw bad('use_dora', 'DoRA is not supported (false)');
  for (const field of ['rank_pattern', 'alpha_pattern'])
    if (raw[field] !== undefined && raw[field] !== null && Object.keys(raw[field] as object).length > 0) throw bad(field, 'per-module ranks and alphas are not supported ({})');
  if (raw.layers_to_transform !== undefined && raw.layers_to_transform !== null) throw bad('layers_to_transform', 'adapters on some layers only are not supported (null)');
  if (typeof raw.r !== 'number') throw bad('r', 'the rank must be a positive integer');
  if (typeof raw.lora_alpha !== 'number') throw bad('lora_alpha', 'must be a number');
  const targets = raw.target_modules;
  if (!(targets === 'all-linear' || (Array.isArray(targets) && targets.every((t) => typeof t === 'string'))))
    throw bad('target_modules', 'must be a list of module names or "all-linear" (a regular expression is not supported)');
  if (raw.use_rslora !== undefined && typeof raw.use_rslora !== 'boolean') throw bad('use_rslora', 'must be true or false');
  let targetModules: string[];
  try { targetModules = loraTargetModules(model, targets as string[] | 'all-linear'); } catch (e) { throw new LoraError(`${file}: field 'target_modules': ${(e as Error).message}`); }
  const config: LoraConfig = {
    r: raw.r, alpha: raw.lora_alpha, dropout: typeof raw.lora_dropout === 'number' ? raw.lora_dropout : 0,
    targetModules, useRslora: raw.use_rslora === true, baseModel: typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : '',
  };
  checkLoraConfig(config, file);
  return config;
}

/** adapter_config.json as PEFT writes it. */
export function peftConfigJson(lora: LoraConfig, inferenceMode = true): Record<string, unknown> {
  return {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout,
    target_modules: lora.targetModules, bias: 'none', fan_in_fan_out: false, use_rslora: lora.useRslora,
    base_model_name_or_path: lora.baseModel, inference_mode: inferenceMode, modules_to_save: null, init_lora_weights: true,
  };
}

/**
 * The adapter tensors of adapter_model.safetensors in `dir` as f32 (F32, F16 or BF16 on disk), checked strictly
 * against the table: every missing, unexpected or wrongly shaped tensor is listed at once, naming the file.
 */
export function readAdapterWeights(dir: string, specs: readonly ParamSpec[]): Map<string, Float32Array> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(path)) throw new LoraError(`${dir}: no ${ADAPTER_WEIGHTS_FILE}`);
  const file = SafetensorsFile.open(path);
  try {
    const wanted = new Set(specs.map((s) => s.name));
    const missing: string[] = [], misshaped: string[] = [];
    for (const s of specs) {
      if (!file.has(s.name)) { missing.push(`${s.name} ${shapeString(s.shape)}`); continue; }
      const t = file.info(s.name);
      if (shapeString(t.shape) !== shapeString(s.shape)) misshaped.push(`${s.name}: ${shapeString(t.shape)}, the adapter config wants ${shapeString(s.shape)}`);
      else if (!['F32', 'F16', 'BF16'].includes(t.dtype)) misshaped.push(`${s.name}: dtype ${t.dtype}, wants F32, F16 or BF16`);
    }
    const unexpected = file.names().filter((n) => !wanted.has(n)).map((n) => `${n} ${shapeString(file.info(n).shape)}`);
    if (missing.length + unexpected.length + misshaped.length > 0) throw new WeightsError(path, missing, unexpected, misshaped);
    return new Map(specs.map((s) => [s.name, file.read(s.name) as Float32Array]));
  } finally {
    file.close();
  }
}

/** Loads a PEFT LoRA adapter folder onto a loaded base model (attachLora with the folder's config and tensors). */
export function loadLora(model: CausalLM, dir: string): LoraConfig {
  const lora = readLoraConfig(dir, model.config);
  attachLora(model, lora, readAdapterWeights(dir, adapterSpecs(model.config, lora)));
  return lora;
}

/** Writes the model's adapters as a PEFT folder: adapter_config.json and adapter_model.safetensors (f32). */
export async function saveLora(model: CausalLM, dir: string): Promise<void> {
  if (!model.lora) throw new LoraError('saveLora: the model has no LoRA adapters');
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const s of model.params.specs.filter((s) => s.adapter)) {
    tensors[s.name] = { dtype: 'F32', shape: s.shape, data: (await model.params.get(s.name).toArray()) as Float32Array };
  }
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(peftConfigJson(model.lora.config), null, 2)}\n`);
}

/** W += s·B·A in place on the GPU (W f32 [out, in], A [r, in], B [out, r]), charged to the ledger phase `merge`. */
export function mergeInto(w: Tensor, a: Tensor, b: Tensor, s: number): void {
  ledger.inPhase('merge', () => noGrad(() => tidy(() => { addInto(w, scale(matmul(b, a), s)); })));
}

/** The base modules that have adapters in the table: `<module>` for each `base_model.model.<module>.lora_A.weight`. */
function adaptedModules(specs: readonly ParamSpec[]): string[] {
  return specs.filter((s) => s.name.endsWith('.lora_A.weight')).map((s) => s.name.slice(PEFT_PREFIX.length, -'.lora_A.weight'.length));
}

/**
 * Merges the adapters into the base in place and drops them (model.lora is cleared): W <- W + s·B·A on the GPU,
 * in f32; a 16-bit base is widened to f32 for the merge and rounded to nearest even when written back.
 */
export async function mergeLora(model: CausalLM): Promise<void> {
  if (!model.lora) throw new LoraError('mergeLora: the model has no LoRA adapters');
  const s = model.lora.scaling, p = model.params;
  for (const module of adaptedModules(p.specs)) {
    const w = p.get(`${module}.weight`), { a, b } = loraNames(module);
    if (w.dtype === 'f32') { mergeInto(w, p.get(a), p.get(b), s); continue; }
    const wide = Tensor.fromArray(await w.toArray(), w.shape);
    mergeInto(wide, p.get(a), p.get(b), s);
    w.write(await wide.toArray());
    wide.dispose();
  }
  p.remove(/\.lora_[AB]\.weight$/);
  model.lora = undefined;
}

/** Files of a model folder that a merged folder carries over as they are (config.json is rewritten). */
const CARRIED_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'tokenizer.model', 'vocab.json', 'merges.txt', 'added_tokens.json', 'chat_template.jinja', 'chat_template.json'];

export interface MergeReport { modules: number; tensors: number; dtypes: Record<string, number>; files: string[] }

/**
 * Writes `outDir` = the base folder `modelDir` with the adapter of `adapterDir` merged: model.safetensors (every
 * tensor in f32, or in the base file's dtype with `dtype: 'base'`, adapted ones merged in f32 and rounded to
 * nearest even), config.json (its dtype field set to float32 when writing f32), and the generation config and
 * tokenizer files when present. Streams one tensor at a time through the GPU; the output is held on the host.
 */
export async function mergeLoraFolder(modelDir: string, adapterDir: string, outDir: string, opts: { dtype: 'f32' | 'base' }): Promise<MergeReport> {
  const config = loadConfigFor(modelDir, 'lm');
  const lora = readLoraConfig(adapterDir, config);
  const adapters = readAdapterWeights(adapterDir, adapterSpecs(config, lora));
  const s = loraScaling(lora);
  const specs = modelParams(config);
  const weights = ModelWeights.open(modelDir, specs);
  const tensors: Record<string, TensorToWrite> = {};
  const report: MergeReport = { modules: 0, tensors: 0, dtypes: {}, files: [] };
  try {
    for (const spec of specs) {
      const module = spec.name.slice(0, -'.weight'.length), names = loraNames(module);
      const base = weights.dtypeOf(spec.name);
      const dtype = opts.dtype === 'f32' ? 'F32' : base === 'f32' ? 'F32' : base === 'f16' ? 'F16' : 'BF16';
      let data: Float32Array | Uint16Array;
      if (spec.name.endsWith('.weight') && adapters.has(names.a)) {
        data = await mergedOnGpu(weights.read(spec.name), spec.shape, adapters.get(names.a)!, adapters.get(names.b)!, lora.r, s);
        report.modules++;
      } else if (dtype !== 'F32') {
        const { bytes } = weights.readRaw(spec.name); // a 16-bit tensor kept as it is, bit for bit
        data = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
      } else data = weights.read(spec.name);
      tensors[spec.name] = { dtype, shape: spec.shape, data };
      report.dtypes[dtype] = (report.dtypes[dtype] ?? 0) + 1;
      report.tensors++;
    }
  } finally {
    weights.close();
  }
  mkdirSync(outDir, { recursive: true });
  writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
  const json = JSON.parse(readFileSync(join(modelDir, CONFIG_FILE), 'utf8')) as Record<string, unknown>;
  if (opts.dtype === 'f32') for (const field of ['torch_dtype', 'dtype']) if (field in json) json[field] = 'float32';
  writeFileSync(join(outDir, CONFIG_FILE), `${JSON.stringify(json, null, 2)}\n`);
  report.files.push('model.safetensors', CONFIG_FILE);
  const present = new Set(readdirSync(modelDir));
  for (const f of CARRIED_FILES) if (present.has(f)) { copyFileSync(join(modelDir, f), join(outDir, f)); report.files.push(f); }
  return report;
}

/** W + s·B·A of one weight [out, in] through the GPU (mergeInto), back on the host in f32. */
async function mergedOnGpu(w: Float32Array, shape: number[], a: Float32Array, b: Float32Array, r: number, s: number): Promise<Float32Array> {
  const [out, inFeatures] = shape;
  const wt = Tensor.fromArray(w, shape), at = Tensor.fromArray(a, [r, inFeatures]), bt = Tensor.fromArray(b, [out, r]);
  try {
    mergeInto(wt, at, bt, s);
    return (await wt.toArray()) as Float32Array;
  } finally {
    for (const t of [wt, at, bt]) t.dispose();
  }
}
