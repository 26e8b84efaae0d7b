// The model being trained (the policy), as every training objective loads and saves it: all its weights (full
// fine-tuning) or LoRA adapters on a frozen base. A checkpoint folder is a folder that loads without juice:
//
//   full:  config.json, model.safetensors (or model-0000k-of-0000n.safetensors + model.safetensors.index.json past
//          the shard size, as transformers' save_pretrained), generation_config.json (the source's, or one made of
//          the config's bos/eos/pad ids), and the source's tokenizer files  -> AutoModelForCausalLM.from_pretrained
//   LoRA:  adapter_config.json, adapter_model.safetensors, and the tokenizer files  -> PeftModel.from_pretrained
//          on the base (or `juice merge-lora`)
//
// Resuming loads the parameters back from such a folder: the full model from the checkpoint itself, the adapters
// from it onto the base loaded from --model.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { INDEX_FILE, planShards, type TensorToWrite } from '../engine/safetensors.ts';
import { CausalLM, loadCausalLM } from '../models/causal_lm.ts';
import { CONFIG_FILE } from '../models/config.ts';
import type { LoraTargets } from '../models/lora.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, attachLora, loadLora, loraConfig, peftConfigJson } from '../models/peft.ts';
import type { FloatDType } from '../kernels/dtype.ts';
import type { CheckpointFile } from './checkpoint.ts';

/** Tokenizer files a checkpoint carries over from the source folder when present. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model',
  'vocab.json', 'merges.txt', 'added_tokens.json', 'chat_template.jinja'];
export const GENERATION_CONFIG_FILE = 'generation_config.json';

export interface PolicySpec {
  /** The folder training starts from (config.json, weights, tokenizer). */
  modelDir: string;
  /** Storage of the base's matrices; 16-bit only with LoRA. */
  weightsDtype: FloatDType;
  lora?: { r: number; alpha: number; dropout: number; targets?: LoraTargets };
  /** Seed of LoRA's initial A and of its dropout masks. */
  seed: number;
}

/** The policy at the start of training, or its parameters read back from the checkpoint folder `resumeDir`. */
export function loadPolicy(spec: PolicySpec, resumeDir?: string): CausalLM {
  if (!spec.lora) return loadCausalLM(resumeDir ?? spec.modelDir, { weightsDtype: spec.weightsDtype });
  const model = loadCausalLM(spec.modelDir, { weightsDtype: spec.weightsDtype });
  try {
    if (resumeDir !== undefined) loadLora(model, resumeDir);
    else {
      const { r, alpha, dropout, targets } = spec.lora;
      attachLora(model, loraConfig(model.config, { r, alpha, dropout, targetModules: targets as string[] | undefined, baseModel: spec.modelDir }), undefined, spec.seed);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.lora!.seed = spec.seed;
  return model;
}

/** The files of a checkpoint that hold the policy (see the top of this file). */
export async function policyFiles(model: CausalLM, sourceDir: string, maxShardBytes: number): Promise<CheckpointFile[]> {
  const carried: CheckpointFile[] = TOKENIZER_FILES.filter((f) => existsSync(join(sourceDir, f))).map((f) => ({ name: f, kind: 'copy', from: join(sourceDir, f) }));
  const specs = model.lora ? model.params.specs.filter((s) => s.adapter) : model.params.specs;
  const tensors: Record<string, TensorToWrite> = {};
  const values = await Promise.all(specs.map((s) => model.params.get(s.name).toArray()));
  specs.forEach((s, i) => { tensors[s.name] = { dtype: 'F32', shape: s.shape, data: values[i] as Float32Array }; });
  if (model.lora) {
    return [
      { name: ADAPTER_CONFIG_FILE, kind: 'json', value: peftConfigJson(model.lora.config) },
      { name: ADAPTER_WEIGHTS_FILE, kind: 'safetensors', tensors, metadata: { format: 'pt' } },
      ...carried,
    ];
  }
  const config = JSON.parse(readFileSync(join(sourceDir, CONFIG_FILE), 'utf8')) as Record<string, unknown>;
  for (const field of ['torch_dtype', 'dtype']) if (field in config) config[field] = 'float32'; // the weights are written in f32
  const plan = planShards(tensors, maxShardBytes);
  const c = model.config;
  const generation: CheckpointFile = existsSync(join(sourceDir, GENERATION_CONFIG_FILE))
    ? { name: GENERATION_CONFIG_FILE, kind: 'copy', from: join(sourceDir, GENERATION_CONFIG_FILE) }
    : { name: GENERATION_CONFIG_FILE, kind: 'json', value: Object.fromEntries(Object.entries({ bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId }).filter(([, v]) => v !== null)) };
  return [
    { name: CONFIG_FILE, kind: 'json', value: config },
    ...plan.shards.map((s): CheckpointFile => ({ name: s.file, kind: 'safetensors', tensors: s.tensors, metadata: { format: 'pt' } })),
    ...(plan.index ? [{ name: INDEX_FILE, kind: 'json', value: plan.index } as CheckpointFile] : []),
    generation,
    ...carried,
  ];
}
