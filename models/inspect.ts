// `juice inspect DIR`: architecture, parameter count, memory plan (full training and, with a rank, LoRA) and
// FLOPs per token of a Hugging Face model folder, computed from config.json and the parameter tables before
// anything is allocated.
// The weights are optional; when present their headers are checked against the table.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { memoryPlan } from '../engine/params.ts';
import { numelOf } from '../engine/tensor.ts';
import { INDEX_FILE, SINGLE_FILE } from '../engine/safetensors.ts';
import { loadConfig, modelParams, type ModelConfig } from './config.ts';
import { frozenBase, loraParamSpecs, loraTargetModules, type LoraTargets } from './lora.ts';
import { ModelWeights } from './weights.ts';
import type { FloatDType } from '../kernels/dtype.ts';

export interface ModelSummary {
  dir: string;
  config: ModelConfig;
  architecture: string;
  parameters: number;
  /** The input embedding table: a lookup, so it costs no FLOPs. */
  embeddingParameters: number;
  /** Bytes. */
  memory: {
    weightsF32: number;
    weights16: number;
    gradientsF32: number;
    adamwF32: number;
    activationsPerToken: number;
  };
  flops: { sequenceLength: number; forwardPerToken: number; trainingPerToken: number };
  /** The LoRA setting, when a rank was given: null otherwise. */
  lora: LoraSummary | null;
  /** null: the folder holds no weights. */
  weights: { path: string; parametersByDtype: Partial<Record<FloatDType, number>>; problem: string | null } | null;
}

/** LoRA: the base frozen (in f32, or with its matrices in 16 bits), f32 adapters with their gradients and AdamW moments. Bytes. */
export interface LoraSummary {
  r: number;
  targets: string[];
  adapterParameters: number;
  memory: { baseF32: number; base16: number; adaptersF32: number; gradientsF32: number; adamwF32: number };
}

const F32_BYTES = 4;

/**
 * f32 values saved for the backward pass per token, assuming the fused attention kernel saves q, k,
 * v (after rotary), its output and the row log-sum-exp (never the T x T scores):
 *  GPT-NeoX layer: x (ln1 input; also ln2's when parallel) h + ln1 mean/rstd 2 + ln1 out h + q,k,v 3h
 *    + attention out h + lse heads + ln2 mean/rstd 2 + ln2 out h + up-projection out I + GELU out I,
 *    plus x + attn h for ln2 when the residual is sequential:   7h + 2I + heads + 4 (+ h)
 *  Mistral layer: x h + rms 1 + norm out h + q heads*d + k,v 2*kvHeads*d + attention out heads*d
 *    + lse heads + x + attn h + rms 1 + norm out h + gate, up 2I + silu(gate)*up I:
 *    4h + 2*heads*d + 2*kvHeads*d + 3I + heads + 2
 *  after the layers: final norm input h + stats + output h + head output (the logits V, kept for
 *  cross-entropy; 1 for a reward score).
 */
export function activationValuesPerToken(c: ModelConfig): number {
  const h = c.hidden, I = c.intermediate;
  const perLayer = c.modelType === 'gpt_neox'
    ? 7 * h + 2 * I + c.heads + 4 + (c.parallelResidual ? 0 : h)
    : 4 * h + 2 * c.heads * c.headDim + 2 * c.kvHeads * c.headDim + 3 * I + c.heads + 2;
  const normStats = c.modelType === 'gpt_neox' ? 2 : 1;
  const headOutputs = c.head === 'lm' ? c.vocabSize : 1;
  return c.layers * perLayer + 2 * h + normStats + headOutputs;
}

/**
 * FLOPs per token (a multiply-add is 2), PaLM's convention:
 *   forward = 2 * (parameters - embedding lookup table) + 2*2 * layers * context * heads*headDim
 * (the parameter term is every matmul, a tied head included; the attention term is q.k and p.v over
 * context = min(sequenceLength, slidingWindow) keys, not halved for the causal mask);
 *   training = 3 * forward (the backward pass costs twice the forward).
 */
export function flopsPerToken(c: ModelConfig, parameters: number, embeddingParameters: number, sequenceLength: number) {
  const tiedHead = c.head === 'lm' && c.tieWordEmbeddings ? c.vocabSize * c.hidden : 0;
  const context = Math.min(sequenceLength, c.slidingWindow ?? sequenceLength);
  const forwardPerToken = 2 * (parameters - embeddingParameters + tiedHead) + 2 * 2 * c.layers * context * c.heads * c.headDim;
  return { sequenceLength, forwardPerToken, trainingPerToken: 3 * forwardPerToken };
}

function architectureName(c: ModelConfig): string {
  const model = c.modelType === 'gpt_neox' ? 'GPT-NeoX' : 'Mistral';
  return `${model} ${c.head === 'lm' ? 'causal LM' : 'reward model (scalar score head)'}`;
}

function weightsStatus(dir: string, c: ModelConfig): ModelSummary['weights'] {
  const present = [SINGLE_FILE, INDEX_FILE].find((f) => fs.existsSync(path.join(dir, f)));
  if (present === undefined) return null;
  const specs = modelParams(c);
  let weights: ModelWeights;
  try {
    weights = ModelWeights.open(dir, specs);
  } catch (e) {
    return { path: path.join(dir, present), parametersByDtype: {}, problem: (e as Error).message };
  }
  const parametersByDtype: Partial<Record<FloatDType, number>> = {};
  for (const s of specs) {
    const dtype = weights.dtypeOf(s.name);
    parametersByDtype[dtype] = (parametersByDtype[dtype] ?? 0) + numelOf(s.shape);
  }
  const where = weights.path;
  weights.close();
  return { path: where, parametersByDtype, problem: null };
}

export interface DescribeOptions {
  /** For the attention FLOPs; defaults to max_position_embeddings. */
  sequenceLength?: number;
  /** A LoRA rank: the summary then plans the LoRA setting too. */
  loraR?: number;
  /** The LoRA target modules (lora.ts); PEFT's defaults for the architecture when absent. */
  loraTargets?: LoraTargets;
}

/** The LoRA plan: a frozen base (16-bit storage keeps norms and biases in f32, as loading does) and trainable f32 adapters. */
export function loraSummary(config: ModelConfig, r: number, targets?: LoraTargets): LoraSummary {
  const base = frozenBase(modelParams(config));
  const adapters = memoryPlan(loraParamSpecs(config, { r, targets }));
  return {
    r,
    targets: loraTargetModules(config, targets),
    adapterParameters: adapters.parameters,
    memory: {
      baseF32: memoryPlan(base).weightBytes,
      base16: memoryPlan(base, { weightDtype: 'bf16' }).weightBytes,
      adaptersF32: adapters.weightBytes,
      gradientsF32: adapters.gradientBytes,
      adamwF32: adapters.optimizerBytes,
    },
  };
}

/** The structured summary; full training trains every tensor in f32. */
export function describeModel(dir: string, options: DescribeOptions = {}): ModelSummary {
  const config = loadConfig(dir);
  const specs = modelParams(config);
  const plan = memoryPlan(specs);
  const embeddingParameters = specs.filter((s) => s.role === 'embedding').reduce((n, s) => n + numelOf(s.shape), 0);
  return {
    dir,
    config,
    architecture: architectureName(config),
    parameters: plan.parameters,
    embeddingParameters,
    memory: {
      weightsF32: plan.weightBytes,
      weights16: 2 * plan.parameters, // every tensor in 16 bits: a 16-bit checkpoint's size
      gradientsF32: plan.gradientBytes,
      adamwF32: plan.optimizerBytes,
      activationsPerToken: F32_BYTES * activationValuesPerToken(config),
    },
    flops: flopsPerToken(config, plan.parameters, embeddingParameters, options.sequenceLength ?? config.maxPositions),
    lora: options.loraR === undefined ? null : loraSummary(config, options.loraR, options.loraTargets),
    weights: weightsStatus(dir, config),
  };
}

const count = (n: number) => n.toLocaleString('en-US');

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(2)} ${units[i]}`;
}

function flops(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i === 0 ? 0 : 3)} ${units[i]}FLOP`;
}

function loraLines(l: LoraSummary, parameters: number): string[] {
  const m = l.memory, adapterState = m.adaptersF32 + m.gradientsF32 + m.adamwF32;
  return [
    `LoRA r ${l.r} on ${l.targets.join(', ')}: ${count(l.adapterParameters)} adapter parameters (${(100 * l.adapterParameters / parameters).toFixed(3)}% of the base)`,
    `  frozen base f32     ${bytes(m.baseF32)}`,
    `  frozen base 16-bit  ${bytes(m.base16)} (matrices in 16 bits, norms and biases f32)`,
    `  adapters f32        ${bytes(m.adaptersF32)}`,
    `  adapter gradients   ${bytes(m.gradientsF32)}`,
    `  adapter AdamW f32   ${bytes(m.adamwF32)}`,
    `  training state      ${bytes(m.baseF32 + adapterState)} with an f32 base, ${bytes(m.base16 + adapterState)} with a 16-bit base`,
  ];
}

/** The summary as the text `juice inspect` prints. */
export function formatSummary(s: ModelSummary): string {
  const c = s.config, m = s.memory;
  const trainingState = m.weightsF32 + m.gradientsF32 + m.adamwF32;
  const lines = [
    `${s.dir}: ${s.architecture}`,
    `  layers ${c.layers}, hidden ${c.hidden}, heads ${c.heads} (kv heads ${c.kvHeads}, head_dim ${c.headDim}), intermediate ${c.intermediate}, vocab ${c.vocabSize}`,
    `  ${c.modelType === 'gpt_neox' ? `layernorm, ${c.parallelResidual ? 'parallel' : 'sequential'} residual, exact GELU MLP` : 'RMSNorm, SwiGLU MLP'}` +
      `, eps ${c.eps}, rotary ${c.rotaryDims} of ${c.headDim} dims (theta ${c.ropeTheta})` +
      `, ${c.slidingWindow === null ? 'full causal attention' : `sliding window ${c.slidingWindow}`}, max positions ${c.maxPositions}` +
      `, ${c.head === 'lm' ? (c.tieWordEmbeddings ? 'tied' : 'untied') + ' output head' : 'score head'}`,
    `parameters: ${count(s.parameters)} (input embedding ${count(s.embeddingParameters)})`,
    'memory:',
    `  weights f32         ${bytes(m.weightsF32)}`,
    `  weights 16-bit      ${bytes(m.weights16)}`,
    `  gradients f32       ${bytes(m.gradientsF32)}`,
    `  AdamW moments f32   ${bytes(m.adamwF32)}`,
    `  training state      ${bytes(trainingState)} (f32 weights + gradients + AdamW)`,
    `  activations         ${bytes(m.activationsPerToken)} per token (f32, saved for backward)`,
    ...(s.lora === null ? [] : loraLines(s.lora, s.parameters)),
    `FLOPs per token at sequence length ${s.flops.sequenceLength}:`,
    `  forward             ${flops(s.flops.forwardPerToken)}`,
    `  training            ${flops(s.flops.trainingPerToken)} (3 x forward)`,
  ];
  const w = s.weights;
  if (w === null) lines.push('weights: none in this folder');
  else if (w.problem !== null) lines.push(`weights: ${w.problem}`);
  else lines.push(`weights: ${w.path} matches the parameter table (${Object.entries(w.parametersByDtype).map(([d, n]) => `${count(n)} ${d}`).join(', ')})`);
  return lines.join('\n');
}

export function inspectModel(dir: string, options: DescribeOptions = {}): string {
  return formatSummary(describeModel(dir, options));
}
