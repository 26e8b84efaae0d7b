// The training loop, the one SFT, IRFT and RFT share. It reads top to bottom:
//
//   resume        from a checkpoint folder (the caller picked it and loaded the policy's parameters from it, see
//                 train/policy.ts): the optimizer's states, TrainStep's step count, the schedule, the objective's
//                 state (its data cursor and RNG states), LoRA's dropout counter; metrics.jsonl cut to that step
//   for each optimizer step k = resumed + 1 .. totalSteps:
//     plan        the objective gives the step's micro-batch loss functions (gradient accumulation), scaled so
//                 that their sum is the step's loss, and the tokens they hold
//     step        TrainStep.run: forwards and backwards, clipping, the optimizer; ONE read-back (loss, grad norm)
//     log         metrics line {step, epoch, loss, lr, grad_norm, tokens, tokens_per_s, live_gpu_bytes, rss_bytes} + progress
//     evaluate    every evalSteps (and after the last step): the objective's evaluate() -> an eval metrics line
//     save        every saveSteps (and after the last step): checkpoint-k, atomically (train/checkpoint.ts), then
//                 the oldest removed beyond saveTotalLimit
//     signals     SIGINT / SIGTERM: the step under way finishes, a checkpoint is written, exit code 130 / 143
//   plots         plots/*.svg of metrics.jsonl (train/plot.ts)
//
// What differs between the three trainers is the Objective:
//
//   interface Objective {
//     plan(step): Promise<StepPlan>        // the micro-batches of optimizer step `step` (1-based). Async, so that
//                                          // IRFT can generate at a stage's first step and compute the reference's
//                                          // log-probs once there, and RFT can roll out per outer iteration.
//     evaluate?(): Promise<EvalResult>     // under noGrad; eval_loss and any other numbers (e.g. eval_logp_gap)
//     state(): unknown                     // JSON: where the objective stands (data cursor, stage, RNG states)
//     files?(): CheckpointFile[]           // large state beside it (e.g. IRFT's generated pairs of the stage)
//     restore(state, checkpointDir): void  // the inverse of state() + files(), for a resumed run
//   }
//
// A checkpoint holds the policy (policyFiles: a model or PEFT folder), optimizer.safetensors (the optimizer's
// states; its kind and per-parameter step counts in the metadata) and trainer_state.json (global_step, epoch,
// log_history, the run's configuration, TrainStep's state (its loss scaler's with mixed precision) and the
// objective's, the schedule, LoRA's dropout seed and counter). Resuming from checkpoint-k and training to N gives
// the bytes of an uninterrupted run to N.
//
// Ledger phases: every micro-batch's forward is charged to `forwardPhase` (default 'policy-forward'); the
// backward runs under autodiff's own 'backward' phase and the update under 'optimizer'.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ledger } from '../engine/ledger.ts';
import { makeOptimizer, type Optimizer, type OptimizerOptions, type OptimizerKind, type OptimizerStateDict } from '../engine/optim.ts';
import { pool } from '../engine/pool.ts';
import { SafetensorsFile, type TensorToWrite } from '../engine/safetensors.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { CausalLM } from '../models/causal_lm.ts';
import { rotateCheckpoints, writeCheckpoint, type CheckpointFile, type CheckpointPhase } from './checkpoint.ts';
import { METRICS_FILE, MetricsWriter, readMetrics, type MetricsRecord } from './metrics.ts';
import { writePlots } from './plot.ts';
import { policyFiles } from './policy.ts';
import { Progress } from './progress.ts';
import { parseSchedule, type Schedule } from './schedule.ts';
import { LossScaler, type LossScalerOptions } from './loss_scaler.ts';
import { TrainStep, type TrainStepState } from './step.ts';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

/** One optimizer step's work, as the objective plans it. */
export interface StepPlan {
  /** One function per micro-batch returning its scalar loss, scaled so that the sum over the step is its loss. */
  micros: (() => Tensor)[];
  /** Tokens the micro-batches process (unpadded), for tokens/s. */
  tokens: number;
  /** Epochs of the training data done after this step (fractional). */
  epoch: number;
  /** More numbers for the step's metrics line (e.g. response_tokens). */
  extra?: Record<string, number>;
  /**
   * The trainable parameters changed before this step (IRFT's stage start: a fresh LoRA adapter after the merge):
   * the loop drops its optimizer and makes a fresh one over policy.params.entries(); the step count stays.
   */
  freshOptimizer?: boolean;
}

export interface EvalResult { eval_loss: number; [key: string]: number }

/** What SFT, IRFT and RFT each supply to the loop (see the top of this file). */
export interface Objective {
  plan(step: number): Promise<StepPlan>;
  evaluate?(): Promise<EvalResult>;
  state(): unknown;
  files?(): CheckpointFile[];
  restore(state: unknown, checkpointDir: string): void;
}

export interface LoopOptions {
  outDir: string;
  policy: CausalLM;
  /** The folder the policy came from: its config, generation config and tokenizer files go into every checkpoint. */
  sourceDir: string;
  objective: Objective;
  optimizer: { kind: OptimizerKind; options: OptimizerOptions };
  schedule: Schedule;
  clipNorm: number | null;
  /** Mixed precision (f16 products, dynamic loss scaling: train/step.ts); absent: f32 throughout. */
  lossScaling?: LossScalerOptions;
  totalSteps: number;
  saveSteps: number;
  saveTotalLimit?: number;
  /** Evaluate every this many steps; the last step is always evaluated when the objective can. */
  evalSteps?: number;
  maxShardBytes: number;
  /** The checkpoint folder to resume from (its policy parameters are already loaded into `policy`). */
  resumeFrom?: string;
  /** The run's configuration, recorded in trainer_state.json. */
  config: Record<string, unknown>;
  /** Progress lines every this many steps when stdout is not a terminal. */
  logSteps: number;
  forwardPhase?: string;
  log?: (line: string) => void;
}

export interface LoopResult {
  /** 0, or 130 / 143 after SIGINT / SIGTERM. */
  exitCode: number;
  step: number;
  lastCheckpoint: string | null;
  firstLoss: number | null;
  lastLoss: number | null;
  lastEval: EvalResult | null;
  /** Mean tokens/s over the steps this process ran. */
  tokensPerSecond: number;
  seconds: number;
}

interface TrainerState {
  global_step: number;
  epoch: number;
  max_steps: number;
  log_history: MetricsRecord[];
  config: Record<string, unknown>;
  train_step: TrainStepState;
  schedule: Schedule;
  objective: unknown;
  lora: { seed: number; counter: number } | null;
}

/**
 * Test hooks: wait inside step N (after its data was drawn, before its forward) until a signal arrives, or block
 * forever inside the write of checkpoint N after its first file; the tests kill the process there.
 */
const STALL_IN_STEP = Number(process.env.JUICE_TEST_STALL_IN_STEP ?? NaN);
const STALL_IN_CHECKPOINT = Number(process.env.JUICE_TEST_STALL_IN_CHECKPOINT ?? NaN);
function stallForever(what: string): never {
  process.stdout.write(`stalling ${what}\n`);
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
}

export async function trainLoop(o: LoopOptions): Promise<LoopResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  const { policy, objective } = o;
  const lora = policy.lora;
  let optimizer: Optimizer = makeOptimizer(o.optimizer.kind, policy.params.entries(), o.optimizer.options);
  const lossScaler = o.lossScaling ? new LossScaler(o.lossScaling) : undefined; // one per run: fresh optimizers keep it
  let trainStep = new TrainStep({ params: policy.params, optimizer, schedule: o.schedule, clipNorm: o.clipNorm, lossScaler });
  let schedule = o.schedule;
  let epoch = 0;

  // Resume: everything but the policy's parameters, which the caller loaded from the same folder.
  if (o.resumeFrom !== undefined) {
    const state = JSON.parse(readFileSync(join(o.resumeFrom, TRAINER_STATE_FILE), 'utf8')) as TrainerState;
    optimizer.loadStateDict(readOptimizerState(join(o.resumeFrom, OPTIMIZER_FILE)));
    trainStep.loadStateDict(state.train_step);
    const saved = parseSchedule(state.schedule);
    if (JSON.stringify(saved) !== JSON.stringify(o.schedule)) log(`note: the schedule differs from the checkpoint's (${JSON.stringify(saved)}); using this run's ${JSON.stringify(o.schedule)}`);
    schedule = o.schedule;
    objective.restore(state.objective, o.resumeFrom);
    if (lora && state.lora) { lora.seed = state.lora.seed; lora.counter = state.lora.counter; }
    epoch = state.epoch;
    log(`resumed from ${o.resumeFrom} at step ${trainStep.stepCount} (epoch ${epoch.toFixed(2)})`);
  }
  const resumedStep = trainStep.stepCount;
  const metrics = MetricsWriter.open(o.outDir, { resumeStep: resumedStep });
  const history: MetricsRecord[] = readMetrics(join(o.outDir, METRICS_FILE)).records;
  const progress = new Progress({ total: o.totalSteps, every: o.logSteps });
  const say = (line: string) => progress.log(line);

  let stopSignal: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal !== null) process.exit(signal === 'SIGINT' ? 130 : 143); // a second signal: stop now
    stopSignal = signal;
    say(`${signal}: finishing step ${trainStep.stepCount + 1}, then writing a checkpoint (send it again to stop at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let lastCheckpoint: string | null = null, savedStep = resumedStep;
  let firstLoss: number | null = null, lastLoss: number | null = null, lastEval: EvalResult | null = null;
  let tokensDone = 0, secondsInSteps = 0;
  const started = performance.now();

  const evaluate = async (step: number) => {
    if (!objective.evaluate) return;
    const t0 = performance.now();
    const result = await objective.evaluate();
    lastEval = result;
    const record = { type: 'eval' as const, step, ...result };
    metrics.log(record);
    history.push(record);
    say(`eval at step ${step}: ${Object.entries(result).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  };

  const save = async (step: number) => {
    const optimizerState = await optimizer.stateDict();
    const state: TrainerState = {
      global_step: step, epoch, max_steps: o.totalSteps, log_history: history, config: o.config,
      train_step: trainStep.stateDict(), schedule, objective: objective.state(),
      lora: lora ? { seed: lora.seed, counter: lora.counter } : null,
    };
    const files: CheckpointFile[] = [
      ...(await policyFiles(policy, o.sourceDir, o.maxShardBytes)),
      { name: OPTIMIZER_FILE, kind: 'safetensors', ...optimizerTensors(optimizerState) },
      ...(objective.files?.() ?? []),
      { name: TRAINER_STATE_FILE, kind: 'json', value: state },
    ];
    const hook = step === STALL_IN_CHECKPOINT ? (phase: CheckpointPhase) => { if (phase === 'file') stallForever(`in checkpoint ${step}`); } : undefined;
    lastCheckpoint = writeCheckpoint(o.outDir, step, files, { hook });
    savedStep = step;
    const removed = o.saveTotalLimit !== undefined ? rotateCheckpoints(o.outDir, o.saveTotalLimit) : [];
    say(`saved ${lastCheckpoint}${removed.length > 0 ? ` (removed ${removed.length} older)` : ''}`);
  };

  try {
    while (trainStep.stepCount < o.totalSteps && stopSignal === null) {
      const step = trainStep.stepCount + 1;
      const last = step === o.totalSteps;
      const t0 = performance.now();
      const plan = await objective.plan(step);
      if (plan.freshOptimizer) {
        const stepCount = trainStep.stepCount;
        trainStep.dispose();
        optimizer.dispose();
        optimizer = makeOptimizer(o.optimizer.kind, policy.params.entries(), o.optimizer.options);
        trainStep = new TrainStep({ params: policy.params, optimizer, schedule: o.schedule, clipNorm: o.clipNorm, lossScaler });
        trainStep.stepCount = stepCount;
      }
      if (step === STALL_IN_STEP) {
        process.stdout.write(`stalling in step ${step}\n`);
        while (stopSignal === null) await new Promise((r) => setTimeout(r, 20));
      }
      const micros = plan.micros.map((micro) => () => {
        if (lora) { lora.training = true; lora.counter++; } // one dropout counter per forward
        return ledger.inPhase(o.forwardPhase ?? 'policy-forward', micro);
      });
      const result = await trainStep.run(micros);
      if (lora) lora.training = false;
      const seconds = (performance.now() - t0) / 1000;
      epoch = plan.epoch;
      tokensDone += plan.tokens;
      secondsInSteps += seconds;
      firstLoss ??= result.loss;
      lastLoss = result.loss;
      const record = {
        type: 'train' as const, step, epoch, loss: result.loss, lr: result.lr, grad_norm: result.gradNorm,
        tokens: plan.tokens, tokens_per_s: plan.tokens / seconds, live_gpu_bytes: pool.liveBytes, rss_bytes: process.memoryUsage.rss(), ...plan.extra,
        ...(result.lossScale !== undefined ? { loss_scale: result.lossScale, skipped: result.skipped ? 1 : 0 } : {}),
      };
      metrics.log(record);
      history.push(record);
      progress.update({ step, epoch, loss: result.loss, lr: result.lr, tokensPerS: plan.tokens / seconds });

      if (o.evalSteps !== undefined ? step % o.evalSteps === 0 || last : last) await evaluate(step);
      if (step % o.saveSteps === 0 || last) await save(step);
    }
    if (stopSignal !== null && savedStep !== trainStep.stepCount) await save(trainStep.stepCount);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    progress.stop();
    metrics.close();
    ledger.timing = false;
    trainStep.dispose();
    optimizer.dispose();
  }
  const plots = await writePlots(o.outDir);
  log(`plots: ${plots.join(', ')}`);
  const signal = stopSignal as NodeJS.Signals | null;
  return {
    exitCode: signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 0,
    step: trainStep.stepCount, lastCheckpoint, firstLoss, lastLoss, lastEval,
    tokensPerSecond: secondsInSteps > 0 ? tokensDone / secondsInSteps : 0, seconds: (performance.now() - started) / 1000,
  };
}

/** optimizer.safetensors: the state tensors (F32), the kind and the per-parameter step counts in the metadata. */
export function optimizerTensors(d: OptimizerStateDict): { tensors: Record<string, TensorToWrite>; metadata: Record<string, string> } {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [k, v] of Object.entries(d.tensors)) tensors[k] = { dtype: 'F32', shape: [v.length], data: v };
  const step = Object.fromEntries(Object.keys(d.step).sort().map((k) => [k, d.step[k]]));
  return { tensors, metadata: { format: 'juice-optimizer', kind: d.kind, step: JSON.stringify(step) } };
}

export function readOptimizerState(file: string): OptimizerStateDict {
  const f = SafetensorsFile.open(file);
  try {
    const meta = f.metadata as Record<string, string>;
    const tensors: Record<string, Float32Array> = {};
    for (const name of f.names()) tensors[name] = f.read(name) as Float32Array;
    return { kind: meta.kind as OptimizerKind, step: JSON.parse(meta.step ?? '{}') as Record<string, number>, tensors };
  } finally {
    f.close();
  }
}
