// `juice rft`: reward fine-tuning from demonstrations (Li et al. 2024, Algorithm 2) on the shared loop: an explicit
// reward model learnt against the policy's generations, and the policy optimised against it with RLOO.
//
//   iterations  iteration i takes --prompts-per-iteration prompts, in the data's order (wrapping around), as many
//               iterations as --epochs passes over the prompts take
//   rollout     k = --samples-per-prompt sampled responses per prompt (train/reward_learning.ts; temperature 1 by
//               default); the reference's log-probs of every sample once (phase `reference`). The reference is the
//               INITIAL model, kept as a frozen copy in memory (loaded from --model, never trained)
//   reward      --reward-steps updates of the reward model (its own AdamW at --reward-lr, constant) on
//               -log σ(r(prompt + demo) - r(prompt + gen)), every (demo, sample) pair of the iteration, in
//               micro-batches of --batch pairs (train/objectives/rft.ts, phases reward-forward / reward-backward)
//   scores      after the update: rewards of the samples (reward-forward), logp of the policy now (policy-forward,
//               no gradient), KL_i and R_i = r_i - β_KL·KL_i, RLOO advantages A_i; fixed for the iteration
//   policy      --policy-steps optimizer steps of the loop on -mean_i A_i · logp_π(y_i) (micro-batches of --batch)
//
// The reward model is the policy's trunk (the weights of --model) with a fresh `score` head, normal(0, 0.02)
// from --seed as transformers initialises it, or a given ...ForSequenceClassification folder (--reward-model).
// Checkpoints add reward_model.safetensors + reward_config.json (transformers' names: the two files, renamed
// model.safetensors and config.json, load as GPTNeoXForSequenceClassification), reward_optimizer.safetensors,
// rft_rollout.json (the iteration's samples and advantages) and the audit files; the run's reward model is also
// written as the folder reward_model/ (saveRewardModel) at the end. Resume is exact at any step: the
// reward model and its optimizer are checkpointed as they are after the iteration's reward update, and the
// iteration's samples and advantages with them, so nothing is generated or scored again.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../engine/autodiff.ts';
import { initGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { makeOptimizer, type Optimizer, type OptimizerStateDict } from '../engine/optim.ts';
import { memoryPlan, ParameterSet } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { SafetensorsFile, type TensorToWrite } from '../engine/safetensors.ts';
import { numelOf, tidy } from '../engine/tensor.ts';
import { loadCausalLM, loadConfigFor, type CausalLM } from '../models/causal_lm.ts';
import { modelParams, rewardParams, type ModelConfig } from '../models/config.ts';
import { INITIALIZER_RANGE } from '../models/init.ts';
import { loadRewardModel, rewardConfigJson, RewardModel, saveRewardModel } from '../models/reward.ts';
import { Tokenizer } from '../models/tokenizer.ts';
import { ModelWeights } from '../models/weights.ts';
import { auditPeak, OPTIMIZER_KERNEL_FLOPS, RunAudit, trainableElements, Workloads } from './audit.ts';
import type { CheckpointFile } from './checkpoint.ts';
import { optimizerTensors, readOptimizerState, trainLoop, type EvalResult, type LoopResult, type Objective, type StepPlan } from './loop.ts';
import { rftPolicyMicroLoss, rewardMicroLoss, rlooAdvantages, rlooReturns, sampleLogprobs, type SampleBatch } from './objectives/rft.ts';
import { loadPolicy } from './policy.ts';
import {
  derivedSeed, generateResponses, heldOutEvaluator, readDemonstrations, type ReinforcementOptions,
  type Demonstration, type GenerationSettings,
} from './reward_learning.ts';
import { lossScalingOf, loopOptionsOf, RunConfigError, runSetup } from './run_config.ts';
import { SftObjective } from './sft.ts';
import { makeSchedule } from './schedule.ts';
import { TrainStep } from './step.ts';

export const REWARD_WEIGHTS_FILE = 'reward_model.safetensors';
export const REWARD_CONFIG_FILE = 'reward_config.json';
export const REWARD_OPTIMIZER_FILE = 'reward_optimizer.safetensors';
export const ROLLOUT_FILE = 'rft_rollout.json';

export interface RftOptions extends ReinforcementOptions {
  'reward-model'?: string;
  'samples-per-prompt': number;
  'prompts-per-iteration': number;
  'policy-steps': number;
  'reward-steps': number;
  'reward-lr': number;
  'kl-coef': number;
}

/** A new reward model: the trunk of the causal LM in `dir` and a score head [1, C] ~ normal(0, 0.02) from `seed`. */
export function rewardModelFromPolicy(dir: string, config: ModelConfig, seed: number): RewardModel {
  const rc: ModelConfig = { ...config, head: 'score' };
  const weights = ModelWeights.open(dir, modelParams(config));
  const random = rng(seed);
  try {
    return new RewardModel(rc, new ParameterSet(rewardParams(rc), (s) => s.name === 'score.weight'
      ? Float32Array.from({ length: numelOf(s.shape) }, () => INITIALIZER_RANGE * random.normal())
      : weights.read(s.name)));
  } finally {
    weights.close();
  }
}

/** Rows right-padded with padId to the longest: ids [N, T] and the response mask. */
function sampleBatch(rows: readonly { prompt: number[]; response: number[] }[], padId: number): SampleBatch {
  const T = Math.max(...rows.map((r) => r.prompt.length + r.response.length));
  const ids = new Int32Array(rows.length * T).fill(padId), mask = new Float32Array(rows.length * T);
  rows.forEach((r, i) => {
    ids.set(r.prompt, i * T);
    ids.set(r.response, i * T + r.prompt.length);
    mask.fill(1, i * T + r.prompt.length, i * T + r.prompt.length + r.response.length);
  });
  return { ids, mask, T };
}

/** One iteration's rollout: prompt-major samples (sample i of prompt floor(i / k)) and their fixed advantages. */
interface Rollout {
  iteration: number;
  prompts: number[];
  samples: { prompt: number[]; response: number[] }[];
  advantages: number[];
}

export class RftObjective implements Objective {
  private rollout: Rollout | null = null;
  /** The reward model's weights and optimizer state after the iteration's update, on the host, for checkpoints. */
  private snapshot: { tensors: Record<string, TensorToWrite>; optimizer: OptimizerStateDict } | null = null;
  private rewardStep: TrainStep;
  private rewardOptimizer: Optimizer;

  /** The held-out evaluation (--eval-data): the SFT objective's, so that every method reports the same numbers. */
  evaluator: SftObjective | null = null;

  get evaluate(): (() => Promise<EvalResult>) | undefined {
    const e = this.evaluator;
    if (!e?.evaluate) return undefined;
    return () => ledger.inPhaseAsync('evaluation', () => e.evaluate!());
  }

  constructor(
    private readonly policy: CausalLM,
    private readonly reference: CausalLM,
    readonly reward: RewardModel,
    private readonly examples: readonly Demonstration[],
    private readonly o: RftOptions,
    private readonly gen: GenerationSettings,
    private readonly eos: number,
    private readonly padId: number,
    private readonly tokenizer: Tokenizer,
    private readonly audit: RunAudit,
    private readonly log: (l: string) => void,
  ) {
    this.rewardOptimizer = makeOptimizer('adamw', reward.params.entries(), { lr: o['reward-lr'], weightDecay: 0, eps: o['adam-eps'], betas: [o['adam-beta1'], o['adam-beta2']] });
    this.rewardStep = new TrainStep({
      params: reward.params, optimizer: this.rewardOptimizer, clipNorm: o.clip > 0 ? o.clip : null,
      schedule: makeSchedule({ kind: 'constant', lr: o['reward-lr'], totalSteps: 1 }), phases: { forward: 'reward-forward', backward: 'reward-backward' },
    });
  }

  get iterations(): number { return Math.max(1, Math.ceil((this.o.epochs * this.examples.length) / this.o['prompts-per-iteration'])); }

  get totalSteps(): number { return this.iterations * this.o['policy-steps']; }

  async plan(step: number): Promise<StepPlan> {
    const iteration = Math.floor((step - 1) / this.o['policy-steps']) + 1;
    let extra: Record<string, number> = { iteration };
    if (this.rollout === null || this.rollout.iteration !== iteration) extra = { ...extra, ...(await this.startIteration(iteration)) };
    const r = this.rollout!;
    const lora = this.policy.lora !== undefined;
    const micros: (() => ReturnType<typeof rftPolicyMicroLoss>)[] = [];
    let tokens = 0;
    for (let first = 0; first < r.samples.length; first += this.o.batch) {
      const rows = r.samples.slice(first, first + this.o.batch);
      const batch = sampleBatch(rows, this.padId), advantages = r.advantages.slice(first, first + this.o.batch);
      this.audit.workloads.trained('policy', rows.length, batch.T, 'all', lora);
      tokens += rows.reduce((n, s) => n + s.prompt.length + s.response.length, 0);
      micros.push(() => rftPolicyMicroLoss(this.policy, batch, advantages, r.samples.length));
    }
    this.audit.workloads.optimizer(trainableElements(this.policy.params));
    this.audit.workloads.data.tokens.trained += tokens;
    return { micros, tokens, epoch: (iteration * this.o['prompts-per-iteration']) / this.examples.length, extra };
  }

  private async startIteration(iteration: number): Promise<Record<string, number>> {
    const P = this.o['prompts-per-iteration'], k = this.o['samples-per-prompt'], N = this.examples.length;
    const prompts = Array.from({ length: P }, (_, j) => ((iteration - 1) * P + j) % N);
    const repeated = prompts.flatMap((i) => Array.from({ length: k }, () => this.examples[i].prompt));
    const g = await generateResponses(this.policy, repeated, this.gen, derivedSeed(this.o.seed, iteration, 0x7f7), this.eos, this.tokenizer, this.audit.workloads);
    const samples = repeated.map((prompt, i) => ({ prompt, response: g.responses[i] }));
    const w = this.audit.workloads;
    // The reference's log-probs, once for the rollout (the frozen initial model).
    const refLogp: number[] = [];
    for (let first = 0; first < samples.length; first += this.o.batch) {
      const b = sampleBatch(samples.slice(first, first + this.o.batch), this.padId);
      refLogp.push(...await sampleLogprobs(this.reference, b, 'reference'));
      w.forward('reference', b.ids.length / b.T, b.T, 'all');
    }
    // The reward model's update: every (demonstration, sample) pair of the iteration.
    const pairs = samples.map((s, i) => ({ demo: this.examples[prompts[Math.floor(i / k)]].demo, ...s }));
    let rewardLoss = NaN;
    for (let s = 0; s < this.o['reward-steps']; s++) {
      const micros = [];
      for (let first = 0; first < pairs.length; first += this.o.batch) {
        const rows = pairs.slice(first, first + this.o.batch);
        const demo = sampleBatch(rows.map((p) => ({ prompt: p.prompt, response: p.demo })), this.padId);
        const gen = sampleBatch(rows, this.padId);
        const T = Math.max(demo.T, gen.T);
        const pad = (b: SampleBatch) => {
          const ids = new Int32Array(rows.length * T).fill(this.padId);
          for (let r = 0; r < rows.length; r++) ids.set(b.ids.subarray(r * b.T, (r + 1) * b.T), r * T);
          return ids;
        };
        const demoIds = pad(demo), genIds = pad(gen);
        w.trained('reward', 2 * rows.length, T, 'last', false);
        micros.push(() => rewardMicroLoss(this.reward, demoIds, genIds, T, pairs.length));
      }
      w.optimizer(trainableElements(this.reward.params));
      rewardLoss = (await this.rewardStep.run(micros)).loss;
    }
    // Scores after the update: rewards, the policy's log-probs now, KL, returns and the RLOO advantages.
    const rewards: number[] = [], logp: number[] = [];
    for (let first = 0; first < samples.length; first += this.o.batch) {
      const b = sampleBatch(samples.slice(first, first + this.o.batch), this.padId), n = b.ids.length / b.T;
      const r = tidy(() => ledger.inPhase('reward-forward', () => noGrad(() => this.reward.forward(b.ids, b.T))).keep());
      rewards.push(...await r.toArray());
      r.dispose();
      w.forward('reward-forward', n, b.T, 'last', { model: 'reward' });
      logp.push(...await sampleLogprobs(this.policy, b, 'policy-forward'));
      w.forward('policy-forward', n, b.T, 'all', { lora: this.policy.lora !== undefined });
    }
    const { kl, R } = rlooReturns(rewards, logp, refLogp, this.o['kl-coef']);
    const A = rlooAdvantages(R, k);
    this.rollout = { iteration, prompts, samples, advantages: Array.from(A) };
    await this.takeSnapshot();
    const mean = (v: ArrayLike<number>) => Array.from(v).reduce((a, b) => a + b, 0) / Math.max(1, v.length);
    this.log(`iteration ${iteration}/${this.iterations}: generated ${g.generatedTokens} tokens (${prompts.length} prompts x ${k}) in ${g.seconds.toFixed(1)} s (${g.tokensPerSecond.toFixed(1)} tokens/s); ` +
      `reward loss ${rewardLoss.toFixed(4)} after ${this.o['reward-steps']} steps; reward ${mean(rewards).toFixed(4)}, KL ${mean(kl).toFixed(4)}`);
    return { generated_tokens: g.generatedTokens, generation_tokens_per_s: g.tokensPerSecond, reward_loss: rewardLoss, reward_mean: mean(rewards), kl_mean: mean(kl), return_mean: mean(R) };
  }

  private async takeSnapshot(): Promise<void> {
    const tensors: Record<string, TensorToWrite> = {};
    for (const s of this.reward.params.specs) tensors[s.name] = { dtype: 'F32', shape: s.shape, data: (await this.reward.params.get(s.name).toArray()) as Float32Array };
    this.snapshot = { tensors, optimizer: await this.rewardOptimizer.stateDict() };
  }

  state(): { iteration: number; rewardSteps: number } { return { iteration: this.rollout?.iteration ?? 0, rewardSteps: this.rewardStep.stepCount }; }

  files(): CheckpointFile[] {
    const files: CheckpointFile[] = [...this.audit.files()];
    if (this.snapshot) {
      files.push(
        { name: REWARD_WEIGHTS_FILE, kind: 'safetensors', tensors: this.snapshot.tensors, metadata: { format: 'pt' } },
        { name: REWARD_CONFIG_FILE, kind: 'json', value: rewardConfigJson(this.reward.config) },
        { name: REWARD_OPTIMIZER_FILE, kind: 'safetensors', ...optimizerTensors(this.snapshot.optimizer) },
      );
    }
    if (this.rollout) files.push({ name: ROLLOUT_FILE, kind: 'json', value: this.rollout });
    return files;
  }

  restore(json: unknown, dir: string): void {
    const s = json as { iteration?: number; rewardSteps?: number } | null;
    if (!s || !Number.isInteger(s.iteration) || !Number.isInteger(s.rewardSteps)) throw new RunConfigError(`${dir}: the trainer state has no RFT iteration (objective.iteration)`);
    if (s.iteration === 0) return;
    this.rollout = JSON.parse(readFileSync(join(dir, ROLLOUT_FILE), 'utf8')) as Rollout;
    // The reward model as it was after the iteration's update (rewardModelFromCheckpoint loaded its weights).
    this.rewardOptimizer.loadStateDict(readOptimizerState(join(dir, REWARD_OPTIMIZER_FILE)));
    this.rewardStep.stepCount = s.rewardSteps!;
    this.snapshotFromDir(dir);
  }

  private snapshotFromDir(dir: string): void {
    const f = SafetensorsFile.open(join(dir, REWARD_WEIGHTS_FILE));
    const tensors: Record<string, TensorToWrite> = {};
    try { for (const s of this.reward.params.specs) tensors[s.name] = { dtype: 'F32', shape: s.shape, data: f.read(s.name) as Float32Array }; } finally { f.close(); }
    this.snapshot = { tensors, optimizer: readOptimizerState(join(dir, REWARD_OPTIMIZER_FILE)) };
  }

  dispose(): void {
    this.rewardStep.dispose();
    this.rewardOptimizer.dispose();
  }
}

/** The reward model of a resumed run: the checkpoint's reward_model.safetensors under its reward_config.json. */
function rewardModelFromCheckpoint(dir: string): RewardModel {
  const config = loadConfigFor(dir, 'score', { configFile: join(dir, REWARD_CONFIG_FILE) });
  const f = SafetensorsFile.open(join(dir, REWARD_WEIGHTS_FILE));
  try { return new RewardModel(config, new ParameterSet(rewardParams(config), (s) => f.read(s.name) as Float32Array)); } finally { f.close(); }
}

/** `juice rft`: checks the inputs, loads, and trains. */
export async function runRft(o: RftOptions, log: (l: string) => void = (l) => console.log(l)): Promise<LoopResult & { audit: string }> {
  const config = loadConfigFor(o.model, 'lm');
  if (o['max-prompt-length'] + Math.max(o['max-new-tokens'], o['max-length'] - o['max-prompt-length']) > config.maxPositions) throw new RunConfigError(`--max-prompt-length + --max-new-tokens (or --max-length) exceed the model's ${config.maxPositions} positions`);
  const { tokenizer, eos, padId, targets, resumeDir } = runSetup(o, config, log);
  const { examples } = await readDemonstrations(o, tokenizer, eos, log);
  const gen: GenerationSettings = {
    maxNewTokens: o['max-new-tokens'], temperature: o.temperature, topP: o['top-p'], topK: o['top-k'],
    stopStrings: o['no-stop'] ? [] : o.stop, batchSize: o['generation-batch'],
  };

  await initGpu();
  const lora = o['lora-r'] !== undefined ? { r: o['lora-r'], alpha: o['lora-alpha'] ?? o['lora-r'], dropout: o['lora-dropout'], targets } : undefined;
  const policy = loadPolicy({ modelDir: o.model, weightsDtype: o['weights-dtype'], seed: o.seed, lora }, resumeDir);
  const reference = loadCausalLM(o.model, { weightsDtype: o['weights-dtype'], frozen: true });
  const reward = resumeDir !== undefined && existsSync(join(resumeDir, REWARD_WEIGHTS_FILE)) ? rewardModelFromCheckpoint(resumeDir)
    : o['reward-model'] !== undefined ? loadRewardModel(o['reward-model']) : rewardModelFromPolicy(o.model, config, derivedSeed(o.seed, 0x5c0e));
  policy.gradientCheckpointing = reward.gradientCheckpointing = o['gradient-checkpointing'];
  const workloads = new Workloads(config, {
    rewardConfig: reward.config, lora: lora ? { r: lora.r, targets: targets!, dropout: lora.dropout } : undefined, optimizerFlopsPerElement: OPTIMIZER_KERNEL_FLOPS[o.optimizer],
    sampling: { temperature: gen.temperature, topK: gen.topK, topP: gen.topP },
    gradientCheckpointing: { policy: o['gradient-checkpointing'], reward: o['gradient-checkpointing'] },
    mixedPrecision: { policy: lossScalingOf(o) !== undefined }, // the reward model trains in f32 (its TrainStep has no scaler)
  });
  const audit = new RunAudit(workloads);
  if (resumeDir !== undefined) audit.restore(resumeDir);
  let objective: RftObjective | null = null;
  try {
    Object.assign(workloads.data, await auditPeak(o));
    if (o['time-kernels']) ledger.timing = true;
    objective = new RftObjective(policy, reference, reward, examples, o, gen, eos, padId, tokenizer, audit, log);
    objective.evaluator = await heldOutEvaluator(o, policy, tokenizer, eos, padId, audit, log);
    const totalSteps = objective.totalSteps;
    const schedule = makeSchedule({ kind: o.schedule, lr: o.lr, totalSteps, ...(o.warmup >= 1 ? { warmupSteps: o.warmup } : { warmupRatio: o.warmup }) });
    const plan = memoryPlan(policy.params.specs, { weightDtype: o['weights-dtype'] });
    log(`juice rft: ${config.modelType}, ${plan.parameters.toLocaleString('en-US')} parameters, ${plan.trainableParameters.toLocaleString('en-US')} trained${policy.lora ? ` (LoRA r ${policy.lora.config.r})` : ''}; ` +
      `reward model ${o['reward-model'] ?? 'the policy\'s trunk + a fresh score head'}; ${objective.iterations} iterations of ${o['prompts-per-iteration']} prompts x ${o['samples-per-prompt']} samples, ` +
      `${o['reward-steps']} reward steps (lr ${o['reward-lr']}) and ${o['policy-steps']} policy steps each (RLOO, KL coef ${o['kl-coef']} to the initial model, a frozen copy): ${totalSteps} steps`);
    const result = await trainLoop({
      outDir: o.out, policy, sourceDir: o.model, objective,
      ...loopOptionsOf(o, 'rft'), schedule, totalSteps, resumeFrom: resumeDir, log,
    });
    await saveRewardModel(reward, join(o.out, 'reward_model'));
    return { ...result, audit: audit.write(o.out) };
  } finally {
    ledger.timing = false;
    objective?.dispose();
    reward.dispose();
    reference.dispose();
    policy.dispose();
  }
}
