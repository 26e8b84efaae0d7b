// `juice inspect DIR`: architecture, parameter count, memory plan and FLOPs per token of a Hugging
// Face model folder, computed from config.json and the parameter table before anything is allocated.
// The weights are optional; when present their headers are checked against the table.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { memoryPlan } from '../engine/params.ts';
import { numelOf } from '../engine/tensor.ts';
import { INDEX_FILE, SINGLE_FILE } from '../engine/safetensors.ts';
import { loadConfig, modelParams, type ModelConfig } from './config.ts';
import { ModelWeights, type WeightDType } from './weights.ts';

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
  /** null: the folder holds no weights. */
  weights: { path: string; parametersByDtype: Partial<Record<WeightDType, number>>; problem: string | null } | null;
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
  const parametersByDtype: Partial<Record<WeightDType, number>> = {};
  for (const s of specs) {
    const dtype = weights.dtypeOf(s.name);
    parametersByDtype[dtype] = (parametersByDtype[dtype] ?? 0) + numelOf(s.shape);
  }
  const where = weights.path;
  weights.close();
  return { path: where, parametersByDtype, problem: null };
}

/** The structured summary; `sequenceLength` (for the attention FLOPs) defaults to max_position_embeddings. */
export function describeModel(dir: string, options: { sequenceLength?: number } = {}): ModelSummary {
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
      weightsF32: plan.parameterBytes,
      weights16: 2 * plan.parameters,
      gradientsF32: plan.gradientBytes,
      adamwF32: plan.optimizerBytes,
      activationsPerToken: F32_BYTES * activationValuesPerToken(config),
    },
    flops: flopsPerToken(config, plan.parameters, embeddingParameters, options.sequenceLength ?? config.maxPositions),
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

export function inspectModel(dir: string, options: { sequenceLength?: number } = {}): string {
  return formatSummary(describeModel(dir, options));
}

const USAGE = 'usage: juice inspect DIR [--seq-len N] [--json]   (DIR holds config.json; the weights are optional)';

/** `juice inspect DIR [--seq-len N] [--json]`. */
export async function inspectCommand(args: string[]): Promise<number> {
  let dir: string | undefined, sequenceLength: number | undefined, json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') json = true;
    else if (a === '--seq-len') {
      sequenceLength = Number(args[++i]);
      if (!Number.isSafeInteger(sequenceLength) || sequenceLength <= 0) { console.error(`juice inspect: --seq-len needs a positive integer, got ${args[i]}\n${USAGE}`); return 2; }
    } else if (a.startsWith('-') || dir !== undefined) { console.error(`juice inspect: unexpected argument '${a}'\n${USAGE}`); return 2; }
    else dir = a;
  }
  if (dir === undefined) { console.error(USAGE); return 2; }
  const summary = describeModel(dir, { sequenceLength });
  console.log(json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
  return 0;
}
