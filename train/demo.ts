// `juice demo`: reward learning from demonstrations on the embedded task (train/tasks/expert_task.ts), end to end
// on the GPU, in memory, from scratch:
//
//   base      a tiny GPT-NeoX trained by SFT on the expert's demonstrations, stopped while it is fluent (right
//             format and length) but imperfect: its greedy answers score between the weaker policy's and 1. The
//             task is cut down so that this fits the time budget: two operations, sort (S, stochastic: ascending
//             or descending) and reverse (R, deterministic), on 3-5 digits; 400 steps of 16 at a peak lr of 6e-3.
//             Measured on seeds 1-3: greedy score 0.69-0.75, exact 34-44%, right length 100%, against the weaker
//             policy's 0.49-0.51 (0.70 after 300 steps). With all four operations the same 400 steps reach only 0.42
//             (increment and partition need attention patterns of their own); twice the batch costs 1.6 times as
//             much per step on lavapipe for no more score per second; a wider model (hidden 128) learns less per
//             second, a narrower one (hidden 32) is barely faster per step and ends lower (0.68)
//   methods   from that base, each for the same number of optimizer steps on the same train split:
//             sft    more SFT on the demonstrations
//             irft   IRFT (Li et al. 2024): `stages` stages; at each stage's start the policy samples one response per
//                    prompt of the stage's chunk (temperature 1: the paper's y ~ π_θ; greedy would make the policy's
//                    mode the negative, and on S and P the mode is often a correct answer the expert also gives), the
//                    reference log-probs are computed once (the policy at the stage start), then the implicit-reward
//                    loss -log σ(β[(Δ demo) - (Δ generation)]) (train/objectives/irft.ts)
//             rft    a reward model (the base's trunk with a score head) trained on demonstration over base sample,
//                    then RLOO policy steps against it, 2 samples per prompt, KL to the base in the return
//                    (train/objectives/rft.ts)
//   metrics   exact, on the eval split, for the base and after each method (and every evalEvery steps): the mean
//             summed log-prob gap log π(demo) - log π(rejected) (the paper's Figure 1 right), the fraction of pairs
//             where the demonstration is the more likely, the demonstrations' NLL per token, and the task score and
//             exact match of greedy answers
//   audit     the ledger of the whole run by phase against the analytic model (train/audit.ts's Workloads)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../engine/autodiff.ts';
import { ledger, type LedgerEntry } from '../engine/ledger.ts';
import { makeOptimizer, type Optimizer } from '../engine/optim.ts';
import { memoryPlan, ParameterSet } from '../engine/params.ts';
import { rng } from '../engine/random.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { CausalLM } from '../models/causal_lm.ts';
import { modelParams, parseConfig, rewardParams, type ModelConfig } from '../models/config.ts';
import { initParameters, INITIALIZER_RANGE } from '../models/init.ts';
import { RewardModel } from '../models/reward.ts';
import { rollout } from '../models/rollout.ts';
import { ledgerByPhase, trainableElements, Workloads } from './audit.ts';
import { auditRows, PHASES, type AuditRow, type FlopBreakdown, type Phase } from './audit_model.ts';
import { pairBatch, pairLogprobs, type IrftPair } from './objectives/irft.ts';
import { rftPolicyMicroLoss, rewardMicroLoss, rolloutScores, type SampleBatch } from './objectives/rft.ts';
import { sftMicroLoss } from './objectives/sft.ts';
import { irftStageMicros, referenceLogprobs, type IrftStageState } from './irft_stage.ts';
import { renderSvg } from './plot.ts';
import { makeSchedule } from './schedule.ts';
import { TrainStep } from './step.ts';
import {
  BOS_ID, decodeResponse, encodeTaskExample, EOS_ID, exactMatch, PAD_ID, referenceNumbers, score, taskSplits, VOCAB_SIZE,
  type Op, type TaskExample,
} from './tasks/expert_task.ts';

/** FLOPs per element that kernels/adamw.ts's cost charges (the moments, the bias corrections, decay, the gradient scale). */
export const ADAMW_KERNEL_FLOPS_PER_ELEMENT = 15;

/** A tiny GPTNeoXForCausalLM over the task's 19 tokens: 2 layers, hidden 64, 4 heads, full rotary, parallel residual. */
export const DEMO_CONFIG: ModelConfig = parseConfig({
  model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], vocab_size: VOCAB_SIZE, hidden_size: 64, num_attention_heads: 4,
  num_hidden_layers: 2, intermediate_size: 256, rotary_pct: 1, rotary_emb_base: 10000, layer_norm_eps: 1e-5,
  max_position_embeddings: 32, use_parallel_residual: true, tie_word_embeddings: false, hidden_act: 'gelu',
  bos_token_id: BOS_ID, eos_token_id: EOS_ID, pad_token_id: PAD_ID,
}, 'the demo config');

/** The reward model: the same trunk and a score head [1, C] read at the last token that is not padding. */
export const DEMO_REWARD_CONFIG: ModelConfig = { ...DEMO_CONFIG, head: 'score' };

/** Parameters of the demo model, from its table. */
export function demoParameterCount(): number { return memoryPlan(modelParams(DEMO_CONFIG)).parameters; }

export const METHODS = ['sft', 'irft', 'rft'] as const;
export type Method = (typeof METHODS)[number];

export interface DemoOptions {
  seed: number;
  /** Digits per prompt (the task's default is 7-12; fewer make every step cheaper). */
  minDigits: number;
  maxDigits: number;
  /** The task's operations drawn from (the task's default is all four, OPS). */
  ops: readonly Op[];
  /** SFT steps of the base, from scratch. */
  baseSteps: number;
  /** Optimizer steps of each method from the base. */
  steps: number;
  /** Sequences per SFT step, pairs per IRFT step, samples per RLOO step (batch / rlooSamples prompts). */
  batch: number;
  /** Peak learning rate of the base (warmup, then cosine to 10%). */
  baseLr: number;
  /** Constant learning rate of every method. */
  lr: number;
  /** IRFT: stages (1 = SPIN) and β. */
  stages: number;
  beta: number;
  /** Sampling temperature of IRFT's and RFT's generations. */
  temperature: number;
  /** The methods to run (default all, in METHODS' order). */
  methods?: readonly Method[];
  /** RFT: run it; the reward model's steps (on pairs of batch size), RLOO's samples per prompt, the KL coefficient. */
  rft: boolean;
  rewardSteps: number;
  rlooSamples: number;
  betaKl: number;
  /** Eval split size; evaluate every this many steps of a method (and at its end). */
  evalSize: number;
  evalEvery: number;
  /** Time every dispatch (GPU timestamps) for the audit's GPU ms and MFU. */
  timeKernels: boolean;
  log?: (line: string) => void;
}

export const DEMO_DEFAULTS: Omit<DemoOptions, 'log'> = {
  seed: 1, minDigits: 3, maxDigits: 5, ops: ['S', 'R'], baseSteps: 400, steps: 24, batch: 16, baseLr: 6e-3, lr: 1e-3, stages: 3, beta: 0.1,
  temperature: 1, rft: true, rewardSteps: 8, rlooSamples: 2, betaKl: 0.05, evalSize: 96, evalEvery: 12, timeKernels: false,
};

export interface EvalMetrics {
  /** Mean over eval pairs of log π(demo) - log π(rejected), sums over the response (EOS included). */
  logp_gap: number;
  /** Fraction of eval pairs where the demonstration is the more likely. */
  pair_accuracy: number;
  /** The demonstrations' negative log-likelihood per response token. */
  demo_nll: number;
  /** Greedy answers: mean task score, exact-match rate, and the fraction of the demonstration's length. */
  score: number;
  exact: number;
  length_ok: number;
}

export interface MethodResult {
  method: Method | 'base';
  /** train lines {type 'train', step, loss, ...} and eval lines {type 'eval', step, ...EvalMetrics}. */
  records: Record<string, unknown>[];
  final: EvalMetrics;
  seconds: number;
}

export interface DemoResult {
  options: Omit<DemoOptions, 'log'>;
  reference: ReturnType<typeof referenceNumbers>;
  base: MethodResult;
  methods: MethodResult[];
  /** Greedy answers of the base and of each method to the first eval prompts. */
  samples: { prompt: string; demonstration: string; answers: Record<string, string> }[];
  audit: AuditRow[];
  /**
   * Ledger FLOPs by phase and kind beside the analytic model's: the products (matmuls with their bias epilogues, the
   * head, the optimizer's update and grad norm), attention's QKᵀ and PV (forward, backward, decode), and the rest
   * (norms, GELU, rotary, log-softmax, sampling, adds), which the analytic model leaves out.
   */
  kinds: { phase: string; products: number; attention: number; other: number; analyticProducts: number; analyticAttention: number }[];
  ledger: ReturnType<typeof ledger.toJSON>;
  seconds: number;
}

// ---- data ----

interface Encoded { ex: TaskExample; prompt: number[]; demo: number[]; rejected: number[] }

function encoded(ex: TaskExample): Encoded {
  const e = encodeTaskExample(ex);
  const prompt = Array.from(e.ids.subarray(0, e.promptLength));
  return { ex, prompt, demo: Array.from(e.ids.subarray(e.promptLength)), rejected: Array.from(e.rejected.ids.subarray(e.promptLength)) };
}

/** Rows prompt + response, right-padded: ids [B, T] and mask [B, T] = 1 on the response. */
function padded(rows: readonly { prompt: number[]; response: number[] }[]): SampleBatch & { B: number; responseTokens: number } {
  const T = Math.max(...rows.map((r) => r.prompt.length + r.response.length));
  const ids = new Int32Array(rows.length * T).fill(PAD_ID), mask = new Float32Array(rows.length * T);
  let responseTokens = 0;
  rows.forEach((r, b) => {
    ids.set(r.prompt, b * T);
    ids.set(r.response, b * T + r.prompt.length);
    mask.fill(1, b * T + r.prompt.length, b * T + r.prompt.length + r.response.length);
    responseTokens += r.response.length;
  });
  return { ids, mask, T, B: rows.length, responseTokens };
}

/** A cursor over the train split, epoch after epoch in a seeded order. */
class Cycle {
  private order: number[] = [];
  private at = 0;
  private readonly random;
  constructor(private readonly n: number, seed: number) { this.random = rng(seed); }
  take(k: number): number[] {
    const out: number[] = [];
    while (out.length < k) {
      if (this.at === this.order.length) {
        this.order = Array.from({ length: this.n }, (_, i) => i);
        for (let i = this.n - 1; i > 0; i--) { const j = this.random.int(i + 1); [this.order[i], this.order[j]] = [this.order[j], this.order[i]]; }
        this.at = 0;
      }
      out.push(this.order[this.at++]);
    }
    return out;
  }
}

// ---- models ----

async function hostValues(params: ParameterSet): Promise<Map<string, Float32Array>> {
  const m = new Map<string, Float32Array>();
  for (const s of params.specs) m.set(s.name, (await params.get(s.name).toArray()) as Float32Array);
  return m;
}

function modelFrom(values: Map<string, Float32Array>, trainable = true): CausalLM {
  return new CausalLM(DEMO_CONFIG, new ParameterSet(modelParams(DEMO_CONFIG).map((s) => ({ ...s, trainable: trainable && s.trainable })), (s) => values.get(s.name)!.slice()));
}

/** The base's trunk and a fresh score head (normal(0, initializer_range), as transformers initialises it). */
function rewardModelFrom(values: Map<string, Float32Array>, seed: number): RewardModel {
  const random = rng(seed);
  return new RewardModel(DEMO_REWARD_CONFIG, new ParameterSet(rewardParams(DEMO_REWARD_CONFIG), (s) => s.name === 'score.weight'
    ? Float32Array.from({ length: DEMO_CONFIG.hidden }, () => INITIALIZER_RANGE * random.normal())
    : values.get(s.name)!.slice()));
}

function trainer(params: ParameterSet, lr: number, schedule: ReturnType<typeof makeSchedule>, phases?: { forward: string; backward: string }): { step: TrainStep; optimizer: Optimizer } {
  const optimizer = makeOptimizer('adamw', params.entries(), { lr, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 });
  return { step: new TrainStep({ params, optimizer, schedule: { ...schedule, lr }, clipNorm: 1, phases }), optimizer };
}

// ---- the run ----

/** The parts of an analytic count that isModelOp's kernels compute, attention aside: products (bias and head included) and the optimizer's update and grad norm. */
const productsOf = (b: FlopBreakdown) => b.matmul + b.bias + b.head + b.lora + b.optimizer;

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const o = { ...opts };
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  const { train, eval: evalSet } = taskSplits({ train: Math.max(1024, o.batch * 32), eval: o.evalSize }, o.seed, { minDigits: o.minDigits, maxDigits: o.maxDigits, ops: o.ops });
  const trainRows = train.map(encoded), evalRows = evalSet.map(encoded);
  const maxNewTokens = o.maxDigits + 1;
  // kernels/adamw.ts charges 15 FLOPs per element (audit_model.ts's ADAMW_FLOPS_PER_ELEMENT), the grad norm 2 more.
  const workloads = new Workloads(DEMO_CONFIG, { rewardConfig: DEMO_REWARD_CONFIG, optimizerFlopsPerElement: ADAMW_KERNEL_FLOPS_PER_ELEMENT, sampling: { temperature: o.temperature, topK: 0, topP: 1 } });
  ledger.reset();
  ledger.timing = o.timeKernels;

  // Greedy answers and exact log-probs on the eval split, charged to the ledger phase `evaluation`.
  const evaluate = async (model: CausalLM): Promise<{ metrics: EvalMetrics; answers: string[] }> => {
    const pairs: IrftPair[] = evalRows.map((r) => ({ prompt: r.prompt, demo: r.demo, gen: r.rejected }));
    let gap = 0, wins = 0, nll = 0, tokens = 0;
    const size = 64;
    for (let first = 0; first < pairs.length; first += size) {
      const batch = pairBatch(pairs.slice(first, first + size));
      const logp = tidy(() => ledger.inPhase('evaluation', () => noGrad(() => pairLogprobs(model, batch))).keep());
      const v = await logp.toArray();
      logp.dispose();
      workloads.forward('evaluation', 2 * batch.pairs, batch.T, 'all');
      for (let b = 0; b < batch.pairs; b++) {
        gap += v[b] - v[batch.pairs + b];
        wins += v[b] > v[batch.pairs + b] ? 1 : 0;
        nll -= v[b];
        tokens += pairs[first + b].demo.length;
      }
    }
    const prompts = evalRows.map((r) => r.prompt);
    const { rows, passes } = await ledger.inPhaseAsync('evaluation', () => rollout(model, prompts, { batchSize: prompts.length, maxNewTokens, eosTokenIds: [EOS_ID] }));
    workloads.generation(passes, false, 0, 'evaluation');
    const answers = rows.map((r) => decodeResponse(r.tokens));
    let s = 0, x = 0, len = 0;
    answers.forEach((a, i) => {
      s += score(evalSet[i].prompt, a);
      x += Number(exactMatch(evalSet[i].prompt, a));
      len += Number(a.length === evalSet[i].demonstration.length);
    });
    const n = evalRows.length;
    return { metrics: { logp_gap: gap / n, pair_accuracy: wins / n, demo_nll: nll / tokens, score: s / n, exact: x / n, length_ok: len / n }, answers };
  };

  const fmt = (m: EvalMetrics) => `gap ${m.logp_gap.toFixed(2)}  pairs ${(100 * m.pair_accuracy).toFixed(0)}%  demo NLL/token ${m.demo_nll.toFixed(3)}  score ${m.score.toFixed(3)}  exact ${(100 * m.exact).toFixed(1)}%  length ok ${(100 * m.length_ok).toFixed(0)}%`;

  // One SFT step over `batch` demonstrations.
  const sftStep = (model: CausalLM, step: TrainStep, rows: Encoded[]) => {
    const b = padded(rows.map((r) => ({ prompt: r.prompt, response: r.demo })));
    workloads.trained('policy', b.B, b.T, 'all', false);
    workloads.optimizer(trainableElements(model.params));
    return step.run([() => {
      const ids = Tensor.fromArray(b.ids, [b.B, b.T], 'i32'), mask = Tensor.fromArray(b.mask, [b.B, b.T]);
      return sftMicroLoss(model.tokenLogprobs(ids), mask, b.responseTokens);
    }]);
  };

  // ---- the base ----
  const baseStart = performance.now();
  const base = new CausalLM(DEMO_CONFIG, initParameters(DEMO_CONFIG, o.seed));
  const baseRecords: Record<string, unknown>[] = [];
  {
    const schedule = makeSchedule({ kind: 'cosine', lr: o.baseLr, totalSteps: Math.round(o.baseSteps / 0.9), warmupSteps: Math.min(20, o.baseSteps) });
    const { step, optimizer } = trainer(base.params, o.baseLr, schedule);
    const cycle = new Cycle(trainRows.length, o.seed + 11);
    for (let k = 1; k <= o.baseSteps; k++) {
      const r = await sftStep(base, step, cycle.take(o.batch).map((i) => trainRows[i]));
      baseRecords.push({ type: 'train', step: k, loss: r.loss, lr: r.lr, grad_norm: r.gradNorm });
      if (k === 1 || k % 50 === 0 || k === o.baseSteps) log(`base  step ${String(k).padStart(4)}  loss ${r.loss.toFixed(4)}  (${((performance.now() - baseStart) / 1000).toFixed(1)} s)`);
    }
    step.dispose();
    optimizer.dispose();
  }
  const baseEval = await evaluate(base);
  baseRecords.push({ type: 'eval', step: 0, ...baseEval.metrics });
  const baseResult: MethodResult = { method: 'base', records: baseRecords, final: baseEval.metrics, seconds: (performance.now() - baseStart) / 1000 };
  log(`base after ${o.baseSteps} SFT steps: ${fmt(baseEval.metrics)}`);
  const baseValues = await hostValues(base.params);
  base.dispose();
  const answers: Record<string, string[]> = { base: baseEval.answers };

  // ---- the methods, each from the base ----
  const methods: MethodResult[] = [];
  const constant = makeSchedule({ kind: 'constant', lr: o.lr, totalSteps: o.steps });
  for (const method of METHODS) {
    if ((method === 'rft' && !o.rft) || (o.methods && !o.methods.includes(method))) continue;
    const start = performance.now();
    const policy = modelFrom(baseValues);
    const records: Record<string, unknown>[] = [{ type: 'eval', step: 0, ...baseEval.metrics }];
    const { step, optimizer } = trainer(policy.params, o.lr, constant);
    const cycle = new Cycle(trainRows.length, o.seed + 23); // every method sees the prompts in the same order
    const afterStep = async (k: number, r: { loss: number; lr: number; gradNorm: number }, more: Record<string, number> = {}) => {
      records.push({ type: 'train', step: k, loss: r.loss, lr: r.lr, grad_norm: r.gradNorm, ...more });
      if (k % o.evalEvery === 0 || k === o.steps) {
        const e = await evaluate(policy);
        records.push({ type: 'eval', step: k, ...e.metrics });
        log(`${method.padEnd(5)} step ${String(k).padStart(4)}  loss ${r.loss.toFixed(4)}  ${fmt(e.metrics)}  (${((performance.now() - start) / 1000).toFixed(1)} s)`);
        if (k === o.steps) answers[method] = e.answers;
        return e.metrics;
      }
      return null;
    };
    let final: EvalMetrics | null = null;
    const generation = { maxNewTokens, eosTokenIds: [EOS_ID], temperature: o.temperature };

    if (method === 'sft') {
      for (let k = 1; k <= o.steps; k++) final = (await afterStep(k, await sftStep(policy, step, cycle.take(o.batch).map((i) => trainRows[i])))) ?? final;
    }

    if (method === 'irft') {
      const perStage = Math.ceil(o.steps / o.stages);
      for (let stage = 1, k = 0; stage <= o.stages && k < o.steps; stage++) {
        const stageSteps = Math.min(perStage, o.steps - k);
        const chunk = cycle.take(stageSteps * o.batch).map((i) => trainRows[i]);
        // The policy's samples, one per prompt of the chunk, and the reference's log-probs of the pairs, once.
        const prompts = chunk.map((r) => r.prompt);
        const { rows, passes } = await ledger.inPhaseAsync('generation', () => rollout(policy, prompts, { ...generation, seed: o.seed * 1000 + stage, batchSize: prompts.length }));
        workloads.generation(passes, false, rows.reduce((n, r) => n + r.tokens.length, 0));
        const pairs: IrftPair[] = [], kept: number[] = [];
        rows.forEach((row, i) => {
          const same = row.tokens.length === chunk[i].demo.length && row.tokens.every((t, j) => t === chunk[i].demo[j]);
          if (!same) { pairs.push({ prompt: chunk[i].prompt, demo: chunk[i].demo, gen: [...row.tokens] }); kept.push(i); }
        });
        const refBatch = 64;
        for (let first = 0; first < pairs.length; first += refBatch) workloads.forward('reference', 2 * Math.min(refBatch, pairs.length - first), pairBatch(pairs.slice(first, first + refBatch)).T, 'all');
        const reference = pairs.length > 0 ? await referenceLogprobs(policy, pairs, refBatch) : { demo: [], gen: [] };
        const state: IrftStageState = { stage, pairs, examples: kept, dropped: rows.length - pairs.length, reference };
        log(`irft  stage ${stage}: ${pairs.length} pairs (${state.dropped} samples equal to their demonstration dropped), ${stageSteps} steps`);
        const order = new Cycle(pairs.length, o.seed + 31 + stage);
        for (let s = 0; s < stageSteps; s++) {
          k++;
          const members = order.take(Math.min(o.batch, pairs.length));
          workloads.trained('policy', 2 * members.length, pairBatch(members.map((i) => pairs[i])).T, 'all', false);
          workloads.optimizer(trainableElements(policy.params));
          const r = await step.run(irftStageMicros(policy, state, { beta: o.beta, lossType: 'sigmoid' }, members));
          final = (await afterStep(k, r, { stage })) ?? final;
        }
      }
    }

    if (method === 'rft') {
      // The reward model: demonstration over a base sample, rewardSteps steps of `batch` pairs.
      const rm = rewardModelFrom(baseValues, o.seed + 41);
      const reference = modelFrom(baseValues, false);
      {
        const rmTrainer = trainer(rm.params, o.lr, makeSchedule({ kind: 'constant', lr: o.lr, totalSteps: Math.max(1, o.rewardSteps) }), { forward: 'reward-forward', backward: 'reward-backward' });
        const chunk = cycle.take(o.rewardSteps * o.batch).map((i) => trainRows[i]);
        const prompts = chunk.map((r) => r.prompt);
        const { rows, passes } = await ledger.inPhaseAsync('generation', () => rollout(reference, prompts, { ...generation, seed: o.seed * 1000 + 500, batchSize: prompts.length }));
        workloads.generation(passes, false, rows.reduce((n, r) => n + r.tokens.length, 0));
        let acc = 0;
        for (let s = 0; s < o.rewardSteps; s++) {
          const members = chunk.slice(s * o.batch, (s + 1) * o.batch).map((r, j) => ({ r, gen: rows[s * o.batch + j].tokens }));
          const both = padded([...members.map((m) => ({ prompt: m.r.prompt, response: m.r.demo })), ...members.map((m) => ({ prompt: m.r.prompt, response: m.gen }))]);
          const B = members.length;
          workloads.trained('reward', 2 * B, both.T, 'last', false);
          workloads.optimizer(trainableElements(rm.params));
          const r = await rmTrainer.step.run([() => rewardMicroLoss(rm, both.ids.subarray(0, B * both.T), both.ids.subarray(B * both.T), both.T, B)]);
          acc = r.loss;
        }
        log(`rft   reward model: ${o.rewardSteps} steps on demonstration over base sample, last loss ${acc.toFixed(4)}`);
        rmTrainer.step.dispose();
        rmTrainer.optimizer.dispose();
      }
      const k2 = o.rlooSamples, promptsPerStep = Math.max(1, Math.floor(o.batch / k2));
      for (let k = 1; k <= o.steps; k++) {
        const chunk = cycle.take(promptsPerStep).map((i) => trainRows[i]);
        const prompts = chunk.flatMap((r) => Array.from({ length: k2 }, () => r.prompt)); // prompt-major: k samples of each
        const { rows, passes } = await ledger.inPhaseAsync('generation', () => rollout(policy, prompts, { ...generation, seed: o.seed * 1000 + 600 + k, batchSize: prompts.length }));
        workloads.generation(passes, false, rows.reduce((n, r) => n + r.tokens.length, 0));
        const batch = padded(prompts.map((p, i) => ({ prompt: p, response: rows[i].tokens })));
        const { rewards, kl, A } = await rolloutScores(policy, reference, rm, batch, k2, o.betaKl);
        workloads.forward('policy-forward', batch.B, batch.T, 'all');
        workloads.forward('reference', batch.B, batch.T, 'all');
        workloads.forward('reward-forward', batch.B, batch.T, 'last', { model: 'reward' });
        workloads.trained('policy', batch.B, batch.T, 'all', false);
        workloads.optimizer(trainableElements(policy.params));
        const r = await step.run([() => rftPolicyMicroLoss(policy, batch, A, batch.B)]);
        const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, x) => s + x, 0) / a.length;
        const trueScore = mean(rows.map((row, i) => score(chunk[Math.floor(i / k2)].ex.prompt, decodeResponse(row.tokens))));
        final = (await afterStep(k, r, { reward: mean(rewards), kl: mean(kl), sample_score: trueScore })) ?? final;
      }
      rm.dispose();
      reference.dispose();
    }

    step.dispose();
    optimizer.dispose();
    policy.dispose();
    methods.push({ method, records, final: final!, seconds: (performance.now() - start) / 1000 });
  }
  ledger.timing = false;

  // ---- the audit ----
  const entries = ledger.all();
  const audit = auditRows(ledgerByPhase(entries), workloads.analytic(), workloads.useful());
  const breakdown = workloads.breakdown();
  const kinds = audit.map((r) => {
    const mine = entries.filter((e) => e.phase === r.phase);
    const sum = (f: (e: LedgerEntry) => boolean) => mine.filter(f).reduce((s, e) => s + e.flops, 0);
    const att = sum(isAttentionOp), model = sum(isModelOp);
    const b = (PHASES as readonly string[]).includes(r.phase) ? breakdown[r.phase as Phase] : undefined; // 'other' has no analytic count
    return { phase: r.phase, products: model - att, attention: att, other: sum(() => true) - model,
      analyticProducts: b ? productsOf(b) : 0, analyticAttention: b?.attentionExecuted ?? 0 };
  });
  const samples = evalSet.slice(0, 6).map((ex, i) => ({ prompt: ex.prompt, demonstration: ex.demonstration, answers: Object.fromEntries(Object.entries(answers).map(([m, a]) => [m, a[i]])) }));
  const { log: _, ...options } = o;
  return { options, reference: referenceNumbers(evalSet), base: baseResult, methods, samples, audit, kinds, ledger: ledger.toJSON(), seconds: (performance.now() - t0) / 1000 };
}

/**
 * The ops whose FLOPs the analytic model describes: the matrix products (bias epilogues included), attention's
 * QKᵀ and PV products and their backward, and the optimizer's update and grad norm. The rest (norms, GELU, rotary,
 * softmax statistics, log-softmax, sampling, elementwise adds) is outside it.
 */
export function isModelOp(e: Pick<LedgerEntry, 'op'>): boolean {
  return /^matmul/.test(e.op) || isAttentionOp(e) || e.op === 'adamw' || /^squaredSum/.test(e.op);
}

/**
 * Attention's kernels, as the analytic model's executed attention counts them: the forward's and the decode's QKᵀ and
 * PV (and the merge of a decode's key chunks), the backward's delta and its two kernels.
 */
export function isAttentionOp(e: Pick<LedgerEntry, 'op'>): boolean {
  return /^attention(Forward|Decode|Backward(Delta|DkDv|Dq))/.test(e.op); // every kernel variant (F16, Rows, TensorCore, Reduce)
}

// ---- outputs ----

/** The metrics table: one row per method (the base first), exact on the eval split. */
export function metricsTable(r: DemoResult): string {
  const head = ['method'.padEnd(8), 'steps'.padStart(6), 'logp gap'.padStart(9), 'demo>rej'.padStart(9), 'demo NLL/tok'.padStart(13), 'score'.padStart(7), 'exact'.padStart(7), 'len ok'.padStart(7), 'seconds'.padStart(8)];
  const lines = [head.join(' ')];
  for (const m of [r.base, ...r.methods]) {
    const f = m.final;
    lines.push([m.method.padEnd(8), String(m.method === 'base' ? r.options.baseSteps : r.options.steps).padStart(6), f.logp_gap.toFixed(3).padStart(9),
      `${(100 * f.pair_accuracy).toFixed(1)}%`.padStart(9), f.demo_nll.toFixed(4).padStart(13), f.score.toFixed(3).padStart(7),
      `${(100 * f.exact).toFixed(1)}%`.padStart(7), `${(100 * f.length_ok).toFixed(0)}%`.padStart(7), m.seconds.toFixed(1).padStart(8)].join(' '));
  }
  return lines.join('\n');
}

/** The eval gap and the task score per method vs step, two panels (one above the other). */
export function demoPlotSpec(r: DemoResult): Parameters<typeof renderSvg>[0] {
  const panel = (field: 'logp_gap' | 'score', title: string) => ({
    width: 520, height: 180, title,
    data: { values: r.methods.flatMap((m) => m.records.filter((x) => x.type === 'eval').map((x) => ({ method: m.method, step: x.step as number, value: x[field] as number }))) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'optimizer steps from the base' },
      y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
      color: { field: 'method', type: 'nominal', title: null },
    },
  });
  return { background: 'white', vconcat: [panel('logp_gap', 'eval: mean log π(demo) − log π(rejected)'), panel('score', 'eval: greedy task score')] } as Parameters<typeof renderSvg>[0];
}

/** Writes <method>.jsonl (base.jsonl too), results.json, ledger.json and demo.svg into `dir`; returns the paths. */
export async function writeDemoOutputs(r: DemoResult, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const put = (name: string, text: string) => { writeFileSync(join(dir, name), text); written.push(join(dir, name)); };
  for (const m of [r.base, ...r.methods]) put(`${m.method}.jsonl`, m.records.map((x) => JSON.stringify(x)).join('\n') + '\n');
  const { ledger: ledgerJson, ...rest } = r;
  put('results.json', `${JSON.stringify({ ...rest, base: { ...r.base, records: undefined }, methods: r.methods.map((m) => ({ ...m, records: undefined })) }, null, 2)}\n`);
  put('ledger.json', `${JSON.stringify(ledgerJson)}\n`);
  put('demo.svg', await renderSvg(demoPlotSpec(r)));
  return written;
}
