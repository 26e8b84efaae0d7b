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
// Submits per step: micro-batches + 1. Every micro-batch but the last is submitted when its backward is recorded;
// the last goes with the norm and the read-back; the optimizer's update is the final submit. After the first step
// nothing is created: the pipelines are cached and pool memory is flat (test/train_step.test.ts).
import { backward, clearTape, zeroGrad } from '../engine/autodiff.ts';
import { GpuError } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { addInto } from '../engine/ops/elementwise.ts';
import { gradNormSquared } from '../engine/ops/grad_norm.ts';
import { writeSlice } from '../engine/ops/shape.ts';
import type { Optimizer } from '../engine/optim.ts';
import type { ParameterSet } from '../engine/params.ts';
import { clearBytes, flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
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
}

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
}

export class TrainStep {
  /** Optimizer steps done: the schedule's step counter, from 0. */
  stepCount = 0;
  readonly params: ParameterSet;
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  readonly clipNorm: number | null;
  readonly phases: { forward: string; backward: string };
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
    let loss: number, normSquared: number;
    try {
      clearBytes(this.lossSum.binding());
      micros.forEach((micro, k) => {
        tidy(() => {
          const l = ledger.inPhase(this.phases.forward, micro);
          if (l.numel !== 1 || l.dtype !== 'f32') throw new GpuError(`TrainStep.run: micro-batch ${k} returned a ${l.dtype} loss of ${l.numel} elements, not an f32 scalar`);
          ledger.inPhase(this.phases.forward, () => addInto(this.lossSum, l)); // the step's loss sum, charged with the forward
          backward(l, undefined, this.phases.backward);
        });
        if (k < micros.length - 1) flush();
      });
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
    const gradNorm = Math.sqrt(normSquared);
    const bad = !Number.isFinite(loss) ? 'loss' : !Number.isFinite(gradNorm) ? 'grad_norm' : null;
    if (bad) {
      this.zeroGrad();
      throw new NonFiniteError(step, bad, bad === 'loss' ? loss : gradNorm);
    }
    const coef = this.clipNorm === null ? 1 : this.clipNorm / (gradNorm + 1e-6);
    const clipped = coef < 1;
    this.optimizer.step(clipped ? coef : 1);
    this.zeroGrad();
    flush();
    this.stepCount++;
    return { step, loss, gradNorm, clipped, lr };
  }

  stateDict(): { stepCount: number } { return { stepCount: this.stepCount }; }

  loadStateDict(d: { stepCount: number }): void {
    if (!(Number.isSafeInteger(d?.stepCount) && d.stepCount >= 0)) throw new GpuError(`TrainStep.loadStateDict: stepCount ${JSON.stringify(d?.stepCount)} must be a non-negative integer`);
    this.stepCount = d.stepCount;
  }

  /** Frees the step's two small buffers (the parameters and the optimizer belong to the caller). */
  dispose(): void {
    this.lossSum.dispose();
    this.stats.dispose();
  }

  private zeroGrad(): void { zeroGrad(this.params.all()); }
}
