// One optimizer step of training, shared by SFT, IRFT and RFT: they differ only in the loss each micro-batch forms.
//
//   lr = lrAt(schedule, stepCount)              (the first step has lr 0 under warmup; the moments still advance)
//   for each micro-batch: tidy(forward -> loss -> backward), gradients += into the parameters' .grad, the loss
//     added to a running sum on the GPU, one submit
//   [loss, Σ g²] in one small buffer, read back once          (the only read-back of the step)
//   non-finite loss or norm: gradients zeroed, parameters untouched, NonFiniteError
//   coef = clipNorm / (norm + 1e-6), applied when < 1 (torch.nn.utils.clip_grad_norm_; the pre-clip norm is
//     recorded), folded into the optimizer's kernels as their gradScale; then the gradients are zeroed
//
// Mixed precision (a LossScaler, torch.cuda.amp's recipe): the forwards run inside autocast (the models' products
// on f16 copies, engine/ops/cast.ts, each weight's copy made once a step), each backward is seeded with the scale
// instead of 1, the norm read back is the scaled one; a non-finite norm skips the step (gradients zeroed, no update,
// the step still counted, as a schedule stepped every iteration is) and backs the scale off; else norm /= scale and
// the optimizer's gradScale is coef / scale, so unscaling and clipping are one factor.
//
// Submits per step: micro-batches + 1. Every micro-batch but the last is submitted when its backward is recorded;
// the last goes with the norm and the read-back; the optimizer's update is the final submit. After the first step
// nothing is created: the pipelines are cached and pool memory is flat (test/train_step.test.ts).
import { autocast, backward, clearTape, zeroGrad } from '../engine/autodiff.ts';
import { GpuError } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { addInto } from '../engine/ops/elementwise.ts';
import { gradNormSquared } from '../engine/ops/grad_norm.ts';
import { writeSlice } from '../engine/ops/shape.ts';
import type { Optimizer } from '../engine/optim.ts';
import type { ParameterSet } from '../engine/params.ts';
import { clearBytes, flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { withF16WeightCopies } from '../engine/ops/cast.ts';
import type { LossScaler, LossScalerState } from './loss_scaler.ts';
import { lrAt, type Schedule } from './schedule.ts';

export interface StepResult {
  /** The optimizer step just taken, from 1 (stepCount after it). */
  step: number;
  /** The sum of the micro-batches' losses: the optimizer step's loss, before the update. */
  loss: number;
  /** The global L2 norm of the accumulated gradients, before clipping. */
  gradNorm: number;
  /** True when clipping scaled the gradients (coef < 1). */
  clipped: boolean;
  /** The learning rate the step used. */
  lr: number;
  /** Mixed precision: the loss scale the step used, and whether its gradients overflowed and it was skipped. */
  lossScale?: number;
  skipped?: boolean;
}

/** TrainStep's state in trainer_state.json; loss_scaler with mixed precision only. */
export interface TrainStepState { stepCount: number; loss_scaler?: LossScalerState }

/** The loss or the gradient norm of a step is NaN or infinite; the parameters were left untouched. */
export class NonFiniteError extends Error {
  constructor(readonly step: number, readonly what: 'loss' | 'grad_norm', readonly value: number) {
    super(`step ${step}: ${what === 'loss' ? 'the loss' : 'the gradient norm'} is ${value}; the parameters were left as they were and the gradients dropped (lower the learning rate, or check the data and the loss scaling)`);
    this.name = 'NonFiniteError';
  }
}

export interface TrainStepOptions {
  params: ParameterSet;
  optimizer: Optimizer;
  schedule: Schedule;
  /** clip_grad_norm_'s max_norm; null: no clipping. */
  clipNorm: number | null;
  /** Ledger phases of the micro-batches' forwards and backwards (the audit's names; a reward model's step uses reward-*). */
  phases?: { forward: string; backward: string };
  /** Mixed precision with dynamic loss scaling (train/loss_scaler.ts); absent: f32 throughout. */
  lossScaler?: LossScaler;
}

export class TrainStep {
  /** Optimizer steps done: the schedule's step counter, from 0. */
  stepCount = 0;
  readonly params: ParameterSet;
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  readonly clipNorm: number | null;
  readonly phases: { forward: string; backward: string };
  readonly lossScaler: LossScaler | null;
  private readonly lossSeed = Tensor.zeros([1]).keep(); // each backward's seed: the loss scale
  private readonly lossSum = Tensor.zeros([1]).keep(); // Σ of the micro-batches' losses of the step under way
  private readonly stats = Tensor.zeros([2]).keep(); // [loss, Σ g²]: what the step reads back

  constructor(opts: TrainStepOptions) {
    if (opts.clipNorm !== null && !(Number.isFinite(opts.clipNorm) && opts.clipNorm > 0))
      throw new GpuError(`TrainStep: clipNorm ${opts.clipNorm} must be a positive number or null`);
    this.params = opts.params;
    this.optimizer = opts.optimizer;
    this.schedule = opts.schedule;
    this.clipNorm = opts.clipNorm;
    this.phases = opts.phases ?? { forward: 'policy-forward', backward: 'policy-backward' };
    this.lossScaler = opts.lossScaler ?? null;
    this.lossSeed.name = 'TrainStep loss scale';
    this.lossSum.name = 'TrainStep loss sum';
    this.stats.name = 'TrainStep [loss, grad norm²]';
  }

  /**
   * One optimizer step over the micro-batches: `micros` are one function per micro-batch returning that
   * micro-batch's scalar loss tensor, already scaled so that the SUM over micro-batches is the step's loss.
   */
  async run(micros: readonly (() => Tensor)[]): Promise<StepResult> {
    if (micros.length === 0) throw new GpuError('TrainStep.run: no micro-batches');
    const step = this.stepCount + 1;
    const lr = lrAt(this.schedule, this.stepCount);
    this.optimizer.lr = lr;
    const scaler = this.lossScaler;
    const lossScale = scaler?.scale ?? 1;
    let loss: number, normSquared: number;
    try {
      clearBytes(this.lossSum.binding());
      if (scaler) this.lossSeed.write([lossScale]);
      // The weights' f16 copies are made once for all micro-batches and dropped before the optimizer's update.
      withF16WeightCopies(this.params.all(), () => micros.forEach((micro, k) => {
        tidy(() => {
          const l = ledger.inPhase(this.phases.forward, () => (scaler ? autocast(micro) : micro()));
          if (l.numel !== 1 || l.dtype !== 'f32') throw new GpuError(`TrainStep.run: micro-batch ${k} returned a ${l.dtype} loss of ${l.numel} elements, not an f32 scalar`);
          ledger.inPhase(this.phases.forward, () => addInto(this.lossSum, l)); // the step's loss sum, charged with the forward
          backward(l, scaler ? this.lossSeed.reshape(l.shape) : undefined, this.phases.backward);
        });
        if (k < micros.length - 1) flush();
      }));
      ledger.inPhase('optimizer', () => {
        writeSlice(this.stats, this.lossSum, 0, 0);
        const grads = this.params.entries().flatMap((e) => (e.param.grad ? [e.param.grad] : []));
        gradNormSquared(grads, this.stats, 1);
      });
      [loss, normSquared] = await this.stats.toArray();
    } catch (e) {
      clearTape();
      this.zeroGrad();
      throw e;
    }
    if (scaler) {
      const overflow = !Number.isFinite(normSquared);
      scaler.update(overflow);
      if (overflow) {
        this.zeroGrad();
        this.stepCount++;
        return { step, loss, gradNorm: Math.sqrt(normSquared), clipped: false, lr, lossScale, skipped: true };
      }
    }
    const gradNorm = Math.sqrt(normSquared) / lossScale;
    const bad = !Number.isFinite(loss) ? 'loss' : !Number.isFinite(gradNorm) ? 'grad_norm' : null;
    if (bad) {
      this.zeroGrad();
      throw new NonFiniteError(step, bad, bad === 'loss' ? loss : gradNorm);
    }
    const coef = this.clipNorm === null ? 1 : this.clipNorm / (gradNorm + 1e-6);
    const clipped = coef < 1;
    this.optimizer.step((clipped ? coef : 1) / lossScale);
    this.zeroGrad();
    flush();
    this.stepCount++;
    return { step, loss, gradNorm, clipped, lr, ...(scaler ? { lossScale, skipped: false } : {}) };
  }

  stateDict(): TrainStepState {
    return { stepCount: this.stepCount, ...(this.lossScaler ? { loss_scaler: this.lossScaler.stateDict() } : {}) };
  }

  /** The inverse of stateDict; a saved scaler state is loaded where this step has a scaler (mixed precision). */
  loadStateDict(d: TrainStepState): void {
    if (!(Number.isSafeInteger(d?.stepCount) && d.stepCount >= 0)) throw new GpuError(`TrainStep.loadStateDict: stepCount ${JSON.stringify(d?.stepCount)} must be a non-negative integer`);
    this.stepCount = d.stepCount;
    if (this.lossScaler && d.loss_scaler) this.lossScaler.loadStateDict(d.loss_scaler);
  }

  /** Frees the step's three small buffers (the parameters, the optimizer and the scaler belong to the caller). */
  dispose(): void {
    this.lossSeed.dispose();
    this.lossSum.dispose();
    this.stats.dispose();
  }

  private zeroGrad(): void { zeroGrad(this.params.all()); }
}
