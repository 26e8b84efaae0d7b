// Learning-rate schedules, computed as transformers' `optimization.py` computes them.
//
// `step` counts completed optimizer steps from 0: the first optimizer step runs with lrAt(s, 0),
// the (k+1)-th with lrAt(s, k). That is torch's LambdaLR as transformers' Trainer drives it
// (the lambda is evaluated at construction, then after every optimizer.step()). So with warmup
// the first step has lr 0. transformers logs `learning_rate` after scheduler.step(), i.e. the
// lr of the NEXT step: its log at global step k shows lrAt(s, k).
//
// Multipliers (lr = base lr * multiplier), W = warmup steps, T = total steps:
//   constant               1
//   constant_with_warmup   step < W ? step / max(1, W) : 1
//   linear                 step < W ? step / max(1, W) : max(0, (T - step) / max(1, T - W))
//   cosine                 step < W ? step / max(1, W)
//                          : max(0, 0.5 * (1 + cos(pi * numCycles * 2 * progress))),
//                          progress = (step - W) / max(1, T - W), numCycles 0.5 by default
// Past T, linear stays 0 and cosine follows the cosine (as transformers does).

/** transformers' SchedulerType names for the schedules we implement. */
export type ScheduleKind = 'constant' | 'constant_with_warmup' | 'linear' | 'cosine';
const KINDS: readonly ScheduleKind[] = ['constant', 'constant_with_warmup', 'linear', 'cosine'];

/** A resolved schedule: plain data, safe to JSON.stringify into a checkpoint and parseSchedule back. */
export interface Schedule {
  kind: ScheduleKind;
  /** The base (peak) learning rate. */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  /** Cosine only: number of cosine waves; 0.5 decays from lr to 0 once. */
  numCycles: number;
}

export interface ScheduleOptions {
  kind: ScheduleKind;
  lr: number;
  totalSteps: number;
  /** Warmup as a number of steps; wins over warmupRatio when > 0 (as transformers' get_warmup_steps). */
  warmupSteps?: number;
  /** Warmup as a fraction of totalSteps, rounded up: ceil(ratio * totalSteps). */
  warmupRatio?: number;
  numCycles?: number;
}

/** transformers' TrainingArguments.get_warmup_steps: warmupSteps if > 0, else ceil(totalSteps * warmupRatio). */
export function resolveWarmupSteps(totalSteps: number, warmupSteps = 0, warmupRatio = 0): number {
  if (!Number.isSafeInteger(warmupSteps) || warmupSteps < 0) {
    throw new Error(`schedule: warmup steps must be a non-negative integer, got ${warmupSteps}`);
  }
  if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new Error(`schedule: warmup ratio must be in [0, 1], got ${warmupRatio}`);
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio);
}

export function makeSchedule(options: ScheduleOptions): Schedule {
  const { kind, lr, totalSteps } = options;
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) {
    throw new Error(`schedule: total steps must be a positive integer, got ${totalSteps}`);
  }
  const warmupSteps = resolveWarmupSteps(totalSteps, options.warmupSteps, options.warmupRatio);
  return checkSchedule({ kind, lr, totalSteps, warmupSteps, numCycles: options.numCycles ?? 0.5 });
}

function checkSchedule(s: Schedule): Schedule {
  if (!KINDS.includes(s.kind)) throw new Error(`schedule: unknown kind ${JSON.stringify(s.kind)} (known: ${KINDS.join(', ')})`);
  if (!(Number.isFinite(s.lr) && s.lr >= 0)) throw new Error(`schedule: lr must be a finite number >= 0, got ${s.lr}`);
  if (!Number.isSafeInteger(s.totalSteps) || s.totalSteps < 1) {
    throw new Error(`schedule: total steps must be a positive integer, got ${s.totalSteps}`);
  }
  if (!Number.isSafeInteger(s.warmupSteps) || s.warmupSteps < 0) {
    throw new Error(`schedule: warmup steps must be a non-negative integer, got ${s.warmupSteps}`);
  }
  // transformers' get_constant_schedule silently ignores warmup; we refuse rather than surprise.
  if (s.kind === 'constant' && s.warmupSteps > 0) {
    throw new Error(`schedule: 'constant' has no warmup (got ${s.warmupSteps} warmup steps); use 'constant_with_warmup'`);
  }
  if (!(Number.isFinite(s.numCycles) && s.numCycles >= 0)) throw new Error(`schedule: numCycles must be >= 0, got ${s.numCycles}`);
  return s;
}

/** Validates a schedule read back from JSON (a checkpoint's trainer state). */
export function parseSchedule(json: unknown): Schedule {
  if (typeof json !== 'object' || json === null) throw new Error(`schedule: expected an object, got ${JSON.stringify(json)}`);
  const o = json as Record<string, unknown>;
  return checkSchedule({
    kind: o.kind as ScheduleKind, lr: o.lr as number, warmupSteps: o.warmupSteps as number,
    totalSteps: o.totalSteps as number, numCycles: o.numCycles as number,
  });
}

/** The factor the base lr is multiplied by before optimizer step `step` (0-based). */
export function lrMultiplier(s: Schedule, step: number): number {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`schedule: step must be a non-negative integer, got ${step}`);
  const { warmupSteps: w, totalSteps: t } = s;
  if (s.kind === 'constant') return 1;
  if (step < w) return step / Math.max(1, w);
  switch (s.kind) {
    case 'constant_with_warmup':
      return 1;
    case 'linear':
      return Math.max(0, (t - step) / Math.max(1, t - w));
    case 'cosine': {
      const progress = (step - w) / Math.max(1, t - w);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * s.numCycles * 2 * progress)));
    }
  }
}

/** The learning rate of optimizer step `step` (0-based). */
export function lrAt(s: Schedule, step: number): number {
  return s.lr * lrMultiplier(s, step);
}
