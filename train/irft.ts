// `juice irft`: implicit reward fine-tuning (Li et al. 2024, Algorithm 1; SPIN is one stage) on the shared loop.
//
//   stages      the prompts, in the data's order, split into T chunks (chunk c: prompts [c·N/T, (c+1)·N/T))
//   stage start the current policy generates one response per prompt of the stage's chunk (train/reward_learning.ts:
//               batched, KV cache, greedy unless --temperature; EOS and stop strings end a row); pairs whose
//               generation equals the demonstration are dropped; the reference is the policy now: its log-probs
//               of every demonstration and generation are computed once (phase `reference`) and kept on the host
//               with the pairs (train/irft_stage.ts). generations-stage-<s>.jsonl in --out lists them.
//   steps       K epochs over the stage's pairs (a seeded shuffle per epoch) in S_c = ceil(K·|chunk|/(batch·grad-accum))
//               optimizer steps: step j of the stage takes the stream's pairs [j·K·P/S_c, (j+1)·K·P/S_c) (P pairs left
//               after the drops), in micro-batches of --batch pairs; the loss is train/objectives/irft.ts's
//   stage end   (done at the next stage's first step) with LoRA the adapter is merged into the base (phase `merge`)
//               and a fresh adapter attached (seed + stage), so that the base is always the reference; in both
//               modes the optimizer starts fresh at every stage (SPIN's iterations are separate runs); the
//               learning-rate schedule runs over all the run's steps
//
// Checkpoints (the loop's, every --save-steps) add irft_generations.jsonl (the stage's pairs with their reference
// log-probs), with LoRA irft_merged_adapters.safetensors (the adapters of the stages merged so far: a resumed run
// loads the base from --model and merges them again, the same GPU products on the same values, so bit-exact),
// and ledger.json + workloads.json (the audit). Resuming mid-stage trains on the saved pairs: nothing is generated
// again.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ledger } from '../engine/ledger.ts';
import { memoryPlan } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { SafetensorsFile, type TensorToWrite } from '../engine/safetensors.ts';
import { initGpu } from '../engine/gpu.ts';
import { loadCausalLM, loadConfigFor, type CausalLM } from '../models/causal_lm.ts';
import { attachLora, loadLora, mergeLora, readLoraConfig } from '../models/peft.ts';
import { Tokenizer } from '../models/tokenizer.ts';
import { auditPeak, OPTIMIZER_KERNEL_FLOPS, RunAudit, trainableElements, Workloads } from './audit.ts';
import type { CheckpointFile } from './checkpoint.ts';
import { IrftStateError, parseIrftStageState, referenceLogprobs, irftStageMicros, type IrftStageState } from './irft_stage.ts';
import { trainLoop, type EvalResult, type LoopResult, type Objective, type StepPlan } from './loop.ts';
import { pairBatch, type IrftLossType } from './objectives/irft.ts';
import { loadPolicy } from './policy.ts';
import {
  derivedSeed, generateResponses, heldOutEvaluator, readDemonstrations, type ReinforcementOptions, shuffled,
  type Demonstration, type GenerationSettings,
} from './reward_learning.ts';
import { lossScalingOf, loopOptionsOf, RunConfigError, runSetup } from './run_config.ts';
import { makeSchedule } from './schedule.ts';
import { SftObjective } from './sft.ts';

export const GENERATIONS_FILE = 'irft_generations.jsonl';
export const MERGED_ADAPTERS_FILE = 'irft_merged_adapters.safetensors';

export interface IrftOptions extends ReinforcementOptions {
  stages: number;
  'epochs-per-stage': number;
  beta: number;
  loss: IrftLossType;
}

/** The chunk of stage s (from 1): prompts [floor((s-1)·N/T), floor(s·N/T)). */
export function stageChunk(n: number, stages: number, s: number): { first: number; end: number } {
  return { first: Math.floor(((s - 1) * n) / stages), end: Math.floor((s * n) / stages) };
}

/** Optimizer steps of each stage: ceil(K·|chunk| / (batch·grad-accum)). */
export function stageSteps(n: number, stages: number, epochsPerStage: number, pairsPerStep: number): number[] {
  return Array.from({ length: stages }, (_, i) => {
    const { first, end } = stageChunk(n, stages, i + 1);
    return Math.max(1, Math.ceil((epochsPerStage * (end - first)) / pairsPerStep));
  });
}

interface IrftObjectiveState { stage: number; mergedStages: number }

/** The IRFT objective: see the top of this file. */
export class IrftObjective implements Objective {
  /** The pairs of the stage under way (null before the first plan of a new run). */
  private current: IrftStageState | null = null;
  /** With LoRA: the adapters of the stages merged into the base so far (stage -> name -> values). */
  readonly merged: Map<number, Map<string, Float32Array>>;
  private readonly firstStep: number[];

  constructor(
    private readonly policy: CausalLM,
    private readonly examples: readonly Demonstration[],
    private readonly o: IrftOptions,
    private readonly gen: GenerationSettings,
    private readonly eos: number,
    private readonly tokenizer: Tokenizer,
    private readonly audit: RunAudit,
    readonly steps: number[],
    merged: Map<number, Map<string, Float32Array>>,
    private readonly evaluator: SftObjective | null,
    private readonly log: (l: string) => void,
  ) {
    this.merged = merged;
    this.firstStep = steps.map((_, i) => 1 + steps.slice(0, i).reduce((a, b) => a + b, 0));
  }

  get totalSteps(): number { return this.steps.reduce((a, b) => a + b, 0); }

  /** The stage of optimizer step `step` and the step's index in it. */
  stageOf(step: number): { stage: number; index: number } {
    let s = this.steps.length;
    while (this.firstStep[s - 1] > step) s--;
    return { stage: s, index: step - this.firstStep[s - 1] };
  }

  async plan(step: number): Promise<StepPlan> {
    const { stage, index } = this.stageOf(step);
    const extra: Record<string, number> = { stage };
    let freshOptimizer = false;
    if (this.current === null || this.current.stage !== stage) {
      if (this.current !== null || stage > 1) { await this.endStage(stage - 1); freshOptimizer = true; }
      Object.assign(extra, await this.startStage(stage));
    }
    const state = this.current!;
    const P = state.pairs.length, S = this.steps[stage - 1], K = this.o['epochs-per-stage'], L = K * P;
    // The stage's stream of pairs: K epochs, each a seeded shuffle.
    const from = Math.floor((index * L) / S), to = Math.max(Math.floor(((index + 1) * L) / S), from + 1);
    const rows: number[] = [];
    for (let k = from; k < to; k++) {
      const epoch = Math.floor(k / P) % K;
      rows.push(shuffled(P, rng(derivedSeed(this.o.seed, stage, epoch)))[k % P]);
    }
    const lora = this.policy.lora !== undefined;
    let tokens = 0;
    for (let first = 0; first < rows.length; first += this.o.batch) {
      const pairs = rows.slice(first, first + this.o.batch).map((i) => state.pairs[i]);
      const b = pairBatch(pairs);
      this.audit.workloads.trained('policy', 2 * b.pairs, b.T, 'all', lora);
      tokens += pairs.reduce((n, p) => n + 2 * p.prompt.length + p.demo.length + p.gen.length, 0);
    }
    this.audit.workloads.optimizer(trainableElements(this.policy.params));
    this.audit.workloads.data.tokens.trained += tokens;
    const micros = irftStageMicros(this.policy, state, { beta: this.o.beta, lossType: this.o.loss, microBatch: this.o.batch }, rows);
    const chunk = stageChunk(this.examples.length, this.o.stages, stage);
    const done = chunk.first + ((index + 1) / S) * (chunk.end - chunk.first);
    return { micros, tokens, epoch: (K * done) / this.examples.length, extra: { ...extra, pairs: rows.length }, freshOptimizer };
  }

  /** Generation and the reference pass at the start of a stage. */
  private async startStage(stage: number): Promise<Record<string, number>> {
    const { first, end } = stageChunk(this.examples.length, this.o.stages, stage);
    const chunk = this.examples.slice(first, end);
    const g = await generateResponses(this.policy, chunk.map((e) => e.prompt), this.gen, derivedSeed(this.o.seed, stage, 0x6e6e), this.eos, this.tokenizer, this.audit.workloads);
    const state: IrftStageState = { stage, pairs: [], examples: [], dropped: 0, reference: { demo: [], gen: [] } };
    g.responses.forEach((gen, i) => {
      const { prompt, demo } = chunk[i];
      if (gen.length === demo.length && gen.every((t, j) => t === demo[j])) { state.dropped++; return; }
      if (gen.length === 0) { state.dropped++; return; }
      state.pairs.push({ prompt, demo, gen });
      state.examples.push(i);
    });
    if (state.pairs.length === 0) throw new RunConfigError(`stage ${stage}: every generation equals its demonstration (or is empty): no pair to train on`);
    // The reference: the policy now, in batches of --batch pairs, once.
    for (let b = 0; b < state.pairs.length; b += this.o.batch) {
      const slice = state.pairs.slice(b, b + this.o.batch);
      const r = await referenceLogprobs(this.policy, slice, slice.length);
      state.reference.demo.push(...r.demo);
      state.reference.gen.push(...r.gen);
      this.audit.workloads.forward('reference', 2 * slice.length, pairBatch(slice).T, 'all', { lora: this.policy.lora !== undefined });
    }
    this.current = state;
    writeFileSync(join(this.o.out, `generations-stage-${stage}.jsonl`), generationsJsonl(state, this.tokenizer, first));
    const meanLength = g.responses.reduce((n, r) => n + r.length, 0) / Math.max(1, g.responses.length);
    this.log(`stage ${stage}/${this.o.stages}: generated ${g.generatedTokens} tokens for ${chunk.length} prompts in ${g.seconds.toFixed(1)} s (${g.tokensPerSecond.toFixed(1)} tokens/s), ` +
      `mean response ${meanLength.toFixed(1)} tokens; ${state.pairs.length} pairs, ${state.dropped} dropped; reference log-probs computed once`);
    return { generated_tokens: g.generatedTokens, generation_tokens_per_s: g.tokensPerSecond, dropped: state.dropped, gen_length: meanLength };
  }

  /** The end of stage `stage`: with LoRA the adapter merged into the base and a fresh one attached (the dropout state kept). */
  private async endStage(stage: number): Promise<void> {
    const lora = this.policy.lora;
    if (!lora) return;
    const values = new Map<string, Float32Array>();
    for (const s of this.policy.params.specs.filter((s) => s.adapter)) values.set(s.name, (await this.policy.params.get(s.name).toArray()) as Float32Array);
    this.merged.set(stage, values);
    await mergeLora(this.policy);
    this.audit.workloads.merge();
    attachLora(this.policy, lora.config, undefined, derivedSeed(this.o.seed, stage + 1, 0x10a));
    this.policy.lora = lora; // one dropout state for the run: the loop advances its counter and checkpoints it
  }

  get evaluate(): (() => Promise<EvalResult>) | undefined {
    const e = this.evaluator;
    if (!e?.evaluate) return undefined;
    return () => ledger.inPhaseAsync('evaluation', () => e.evaluate!());
  }

  state(): IrftObjectiveState { return { stage: this.current?.stage ?? 0, mergedStages: this.merged.size }; }

  files(): CheckpointFile[] {
    const files: CheckpointFile[] = [...this.audit.files()];
    if (this.current) files.push({ name: GENERATIONS_FILE, kind: 'bytes', data: generationsJsonl(this.current, this.tokenizer, stageChunk(this.examples.length, this.o.stages, this.current.stage).first) });
    if (this.merged.size > 0) files.push({ name: MERGED_ADAPTERS_FILE, kind: 'safetensors', ...mergedAdapterTensors(this.merged) });
    return files;
  }

  restore(json: unknown, dir: string): void {
    const s = json as Partial<IrftObjectiveState> | null;
    if (!s || !Number.isInteger(s.stage) || !Number.isInteger(s.mergedStages)) throw new RunConfigError(`${dir}: the trainer state has no IRFT stage (objective.stage, objective.mergedStages)`);
    if (s.mergedStages !== this.merged.size) throw new RunConfigError(`${dir}: the trainer state names ${s.mergedStages} merged stages, ${MERGED_ADAPTERS_FILE} holds ${this.merged.size}`);
    if (s.stage! >= 1) {
      try {
        this.current = readGenerationsJsonl(join(dir, GENERATIONS_FILE), s.stage!, stageChunk(this.examples.length, this.o.stages, s.stage!).first);
      } catch (e) {
        if (e instanceof IrftStateError) throw new RunConfigError(e.message);
        throw e;
      }
    }
  }
}

/** A stage's pairs as JSONL: one line per pair {example, prompt, demo, gen, gen_text, ref_demo, ref_gen} after a header line. */
function generationsJsonl(s: IrftStageState, tokenizer: Tokenizer, firstExample: number): string {
  const head = JSON.stringify({ stage: s.stage, pairs: s.pairs.length, dropped: s.dropped });
  const lines = s.pairs.map((p, i) => JSON.stringify({
    example: firstExample + s.examples[i], prompt: p.prompt, demo: p.demo, gen: p.gen,
    gen_text: tokenizer.decode(p.gen, { skipSpecialTokens: true }), ref_demo: s.reference.demo[i], ref_gen: s.reference.gen[i],
  }));
  return `${[head, ...lines].join('\n')}\n`;
}

function readGenerationsJsonl(file: string, stage: number, firstExample: number): IrftStageState {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const head = JSON.parse(lines[0]) as { stage: number; dropped: number };
  if (head.stage !== stage) throw new IrftStateError(`${file}: holds stage ${head.stage}, the trainer state says ${stage}`);
  const rows = lines.slice(1).map((l) => JSON.parse(l) as { example: number; prompt: number[]; demo: number[]; gen: number[]; ref_demo: number; ref_gen: number });
  const state = {
    stage, dropped: head.dropped, pairs: rows.map((r) => ({ prompt: r.prompt, demo: r.demo, gen: r.gen })), examples: rows.map((r) => r.example - firstExample),
    reference: { demo: rows.map((r) => r.ref_demo), gen: rows.map((r) => r.ref_gen) },
  };
  return parseIrftStageState(state, file);
}

function mergedAdapterTensors(merged: Map<number, Map<string, Float32Array>>): { tensors: Record<string, TensorToWrite>; metadata: Record<string, string> } {
  const tensors: Record<string, TensorToWrite> = {};
  const stages = [...merged.keys()].sort((a, b) => a - b);
  for (const s of stages) for (const [name, data] of merged.get(s)!) tensors[`stage-${s}.${name}`] = { dtype: 'F32', shape: [data.length], data };
  return { tensors, metadata: { format: 'juice-irft-merged-adapters', stages: JSON.stringify(stages) } };
}

function readMergedAdapters(file: string): Map<number, Map<string, Float32Array>> {
  const out = new Map<number, Map<string, Float32Array>>();
  if (!existsSync(file)) return out;
  const f = SafetensorsFile.open(file);
  try {
    for (const name of f.names()) {
      const m = /^stage-(\d+)\.(.+)$/.exec(name);
      if (!m) throw new RunConfigError(`${file}: unexpected tensor '${name}'`);
      const s = Number(m[1]);
      if (!out.has(s)) out.set(s, new Map());
      out.get(s)!.set(m[2], f.read(name) as Float32Array);
    }
  } finally {
    f.close();
  }
  return out;
}

/** `juice irft`: checks the inputs, loads, and trains. */
export async function runIrft(o: IrftOptions, log: (l: string) => void = (l) => console.log(l)): Promise<LoopResult & { audit: string }> {
  const config = loadConfigFor(o.model, 'lm');
  if (o['max-length'] > config.maxPositions) throw new RunConfigError(`--max-length ${o['max-length']} exceeds the model's ${config.maxPositions} positions (max_position_embeddings)`);
  if (o['max-prompt-length'] + o['max-new-tokens'] > config.maxPositions) throw new RunConfigError(`--max-prompt-length ${o['max-prompt-length']} + --max-new-tokens ${o['max-new-tokens']} exceed the model's ${config.maxPositions} positions`);
  const { tokenizer, eos, padId, targets, resumeDir } = runSetup(o, config, log);
  const { examples } = await readDemonstrations(o, tokenizer, eos, log);
  if (examples.length < o.stages) throw new RunConfigError(`--stages ${o.stages}: only ${examples.length} prompts to split`);
  const steps = stageSteps(examples.length, o.stages, o['epochs-per-stage'], o.batch * o['grad-accum']);
  const totalSteps = steps.reduce((a, b) => a + b, 0);
  const schedule = makeSchedule({ kind: o.schedule, lr: o.lr, totalSteps, ...(o.warmup >= 1 ? { warmupSteps: o.warmup } : { warmupRatio: o.warmup }) });
  const gen: GenerationSettings = {
    maxNewTokens: o['max-new-tokens'], temperature: o.temperature, topP: o['top-p'], topK: o['top-k'],
    stopStrings: o['no-stop'] ? [] : o.stop, batchSize: o['generation-batch'],
  };

  await initGpu();
  const lora = o['lora-r'] !== undefined ? { r: o['lora-r'], alpha: o['lora-alpha'] ?? o['lora-r'], dropout: o['lora-dropout'], targets } : undefined;
  const workloads = new Workloads(config, {
    lora: lora ? { r: lora.r, targets: targets!, dropout: lora.dropout } : undefined, optimizerFlopsPerElement: OPTIMIZER_KERNEL_FLOPS[o.optimizer],
    sampling: { temperature: gen.temperature, topK: gen.topK, topP: gen.topP }, gradientCheckpointing: { policy: o['gradient-checkpointing'] },
    mixedPrecision: { policy: lossScalingOf(o) !== undefined }, // the policy's training passes run under autocast
  });
  const audit = new RunAudit(workloads);
  if (resumeDir !== undefined) audit.restore(resumeDir);
  // LoRA resumed after a stage: the base from --model, the merged stages' adapters merged again, then the checkpoint's adapter.
  const merged = resumeDir !== undefined && lora ? readMergedAdapters(join(resumeDir, MERGED_ADAPTERS_FILE)) : new Map<number, Map<string, Float32Array>>();
  const policy = merged.size > 0 ? loadCausalLM(o.model, { weightsDtype: o['weights-dtype'] }) : loadPolicy({ modelDir: o.model, weightsDtype: o['weights-dtype'], seed: o.seed, lora }, resumeDir);
  policy.gradientCheckpointing = o['gradient-checkpointing'];
  try {
    if (merged.size > 0) {
      const adapter = readLoraConfig(resumeDir!, config);
      for (const s of [...merged.keys()].sort((a, b) => a - b)) {
        attachLora(policy, adapter, merged.get(s));
        await mergeLora(policy);
        workloads.merge();
      }
      loadLora(policy, resumeDir!);
      policy.lora!.seed = o.seed;
    }
    Object.assign(workloads.data, await auditPeak(o));
    if (o['time-kernels']) ledger.timing = true;
    const evaluator = await heldOutEvaluator(o, policy, tokenizer, eos, padId, audit, log);
    const plan = memoryPlan(policy.params.specs, { weightDtype: o['weights-dtype'] });
    log(`juice irft: ${config.modelType}, ${plan.parameters.toLocaleString('en-US')} parameters, ${plan.trainableParameters.toLocaleString('en-US')} trained${policy.lora ? ` (LoRA r ${policy.lora.config.r} on ${policy.lora.config.targetModules.join(', ')}; merged and fresh at each stage)` : ''}; ` +
      `${o.stages} stages of ${o['epochs-per-stage']} epochs over ${examples.length} prompts: ${steps.join(' + ')} = ${totalSteps} steps of up to ${o['grad-accum']} x ${o.batch} pairs; ` +
      `${o.loss} loss, beta ${o.beta}; ${o.temperature === 0 ? 'greedy' : `sampled (temperature ${o.temperature}, top-p ${o['top-p']}, top-k ${o['top-k']})`} generation of up to ${o['max-new-tokens']} tokens; fresh optimizer at each stage`);
    const objective = new IrftObjective(policy, examples, o, gen, eos, tokenizer, audit, steps, merged, evaluator, log);
    const result = await trainLoop({
      outDir: o.out, policy, sourceDir: o.model, objective,
      ...loopOptionsOf(o, 'irft'), schedule, totalSteps, resumeFrom: resumeDir, log,
    });
    const table = audit.write(o.out);
    return { ...result, audit: table };
  } finally {
    ledger.timing = false;
    policy.dispose();
  }
}

