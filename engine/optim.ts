// The optimizers, AdamW and RMSprop with torch.optim's semantics, behind one interface: a fused kernel updating as many
// parameters (or shards of them) a dispatch as the device's bindings allow (kernels/tensor_slots.ts), states in f32
// allocated on a parameter's first step, step counts and bias corrections on the host. step(gradScale) multiplies
// every gradient element by gradScale inside the kernel, so that global-norm clipping costs no pass of its own over
// the gradients.
import { zeroGrad } from './autodiff.ts';
import { gpu, GpuError } from './gpu.ts';
import { deviceLimits, elementwiseShape, launch } from './launch.ts';
import { ledger } from './ledger.ts';
import { Tensor, shapeString, tidy } from './tensor.ts';
import { adamwCall, adamwSlots } from '../kernels/adamw.ts';
import { rangesFitQuads } from '../kernels/tensor_slots.ts';
import { rmspropCall, rmspropSlots } from '../kernels/rmsprop.ts';
import type { DeviceLimits } from '../kernels/spec.ts';

/** Shards are made of whole blocks of this many elements (16 bytes), so every shard starts 16-byte aligned. */
export const SHARD_BLOCK = 4;

/**
 * The elements [begin, end) of a numel-element tensor that shard `shardIndex` of `shardCount` owns.
 * Every shard has the same length L = SHARD_BLOCK * ceil(numel / (SHARD_BLOCK * shardCount)) except the
 * last non-empty one, which is shorter when L does not divide numel; shards past the end are empty (a
 * tensor of fewer blocks than shards). Any numel splits this way; the error is for indices that name no shard.
 */
export function shardOf(numel: number, shardIndex: number, shardCount: number): { begin: number; end: number } {
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new GpuError(`shardOf: shardCount must be a positive integer, got ${shardCount}`);
  if (!Number.isInteger(shardIndex) || shardIndex < 0 || shardIndex >= shardCount)
    throw new GpuError(`shardOf: shardIndex must be an integer in [0, ${shardCount}), got ${shardIndex}`);
  if (!Number.isInteger(numel) || numel < 0) throw new GpuError(`shardOf: numel must be a non-negative integer, got ${numel}`);
  const length = SHARD_BLOCK * Math.ceil(numel / (SHARD_BLOCK * shardCount));
  return { begin: Math.min(shardIndex * length, numel), end: Math.min((shardIndex + 1) * length, numel) };
}

/** One optimized tensor; the model's parameter table decides `decay` (tensors of rank >= 2: matrices and embeddings). */
export interface OptimizerEntry { name: string; param: Tensor; decay: boolean }

/** Which shard of every parameter this optimizer owns (its states cover only that range). */
export interface ShardSpec { shardIndex: number; shardCount: number }

export type OptimizerKind = 'adamw' | 'rmsprop';
export const OPTIMIZER_KINDS: readonly OptimizerKind[] = ['adamw', 'rmsprop'];

/**
 * A checkpoint of an optimizer's states: which optimizer wrote it, `${name}.${state}` per parameter (this shard's
 * range; AdamW's m and v, RMSprop's square_avg), and each parameter's own step count (torch counts per
 * parameter: one that had no gradient at a step is not advanced).
 */
export interface OptimizerStateDict { kind: OptimizerKind; step: Record<string, number>; tensors: Record<string, Float32Array> }
export type AdamWStateDict = OptimizerStateDict;

/** What the training step needs of an optimizer, whichever it is. */
export interface Optimizer {
  readonly kind: OptimizerKind;
  readonly entries: readonly OptimizerEntry[];
  /** Mutable, for learning-rate schedules. */
  lr: number;
  /** Updates every parameter that has a gradient, each gradient multiplied by gradScale (> 0, finite; 1 by default). */
  step(gradScale?: number): void;
  zeroGrad(): void;
  /** Bytes of this shard's states, once every parameter has taken a step. */
  stateBytes(): number;
  stateDict(): Promise<OptimizerStateDict>;
  /** Replaces every state with the dict's; refuses a dict of another kind and reports all mismatches at once. */
  loadStateDict(dict: OptimizerStateDict): void;
  /** Frees the states; the optimizer starts afresh if stepped again. */
  dispose(): void;
}

interface ParamState { tensors: Tensor[]; step: number }

/** A range of one parameter an update covers: param and grad (or windows of them), offset into them, its states' n elements, its step. */
interface Piece { entry: OptimizerEntry; n: number; offset: number; param: Tensor; grad: Tensor; states: Tensor[]; step: number }

/** Whether a dispatch's pieces can be updated in quads: every range and every bound tensor whole quads. */
function inQuads(pieces: readonly Piece[]): boolean {
  return rangesFitQuads(pieces) && pieces.every((p) => [p.grad, p.param, ...p.states].every((t) => t.numel % 4 === 0));
}

/** An optimizer whose update is one elementwise kernel over parameter shards, their gradients and their own states. */
abstract class ElementwiseOptimizer implements Optimizer {
  abstract readonly kind: OptimizerKind;
  lr: number;
  private readonly ranges: { begin: number; end: number }[];
  private readonly states = new Map<string, ParamState>();

  protected constructor(
    private readonly label: string,
    /** The per-parameter state tensors, in the order update() receives them (names of the state dict). */
    private readonly stateNames: readonly string[],
    readonly entries: readonly OptimizerEntry[],
    lr: number,
    problems: string[],
    readonly shard: ShardSpec,
  ) {
    if (!(lr >= 0)) problems.unshift(`lr ${lr} < 0`);
    const names = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) problems.push(`parameter '${e.name}' listed twice`);
      names.add(e.name);
      if (e.param.dtype !== 'f32') problems.push(`parameter '${e.name}' is ${e.param.dtype} ${shapeString(e.param.shape)}, not f32`);
    }
    if (problems.length) throw new GpuError(`${label}: ${problems.join('; ')}`);
    this.lr = lr;
    this.ranges = entries.map((e) => shardOf(e.param.numel, shard.shardIndex, shard.shardCount));
  }

  /** Whether a dispatch's pieces must be at one step (its bias corrections are the dispatch's). */
  protected abstract readonly stepPerDispatch: boolean;

  /** Parameter ranges one dispatch of this optimizer's kernel updates on this device. */
  protected abstract slots(limits: DeviceLimits): number;

  /** Launches one dispatch updating the pieces (1 to slots() of them; at one step where stepPerDispatch). */
  protected abstract update(pieces: readonly Piece[], gradScale: number): void;

  /** param[begin, end) as pieces: one, or windows of one binding each when the parameter is larger than one. */
  private piecesOf(entry: OptimizerEntry, begin: number, end: number, grad: Tensor, states: Tensor[], step: number): Piece[] {
    const { param } = entry;
    const { maxStorageBufferBindingSize: maxBinding, minStorageBufferOffsetAlignment: align } = gpu().limits;
    if (param.bytes <= maxBinding) return [{ entry, n: end - begin, offset: begin, param, grad, states, step }];
    // Window starts in the states are aligned multiples; param and grad are bound from the aligned element
    // before the window's first and the kernel skips to it (a shard may begin anywhere on a 16-byte block).
    const alignElems = align / 4;
    const count = Math.floor((maxBinding / 4 - alignElems) / alignElems) * alignElems;
    const pieces: Piece[] = [];
    for (let first = 0; first < end - begin; first += count) {
      const n = Math.min(count, end - begin - first);
      const start = begin + first, base = start - (start % alignElems);
      const window = (t: Tensor) => t.reshape([-1]).rows(base, start - base + n);
      pieces.push({ entry, n, offset: start - base, param: window(param), grad: window(grad), states: states.map((t) => t.rows(first, n)), step });
    }
    return pieces;
  }

  /**
   * Updates this shard of every parameter that has a gradient; parameters without one are skipped, as torch does.
   * Consecutive pieces share a dispatch, up to slots() of them (at one step where stepPerDispatch), two windows of
   * one parameter never together (an unaligned shard's windows overlap where they are bound).
   */
  step(gradScale = 1): void {
    if (!(Number.isFinite(gradScale) && gradScale > 0)) throw new GpuError(`${this.label}.step: gradScale ${gradScale} must be finite and > 0`);
    ledger.inPhase('optimizer', () => tidy(() => {
      const pieces = this.entries.flatMap((entry, i) => {
        const { name, param } = entry;
        const grad = param.grad;
        const { begin, end } = this.ranges[i];
        if (!grad || begin === end) return [];
        if (grad.numel !== param.numel) throw new GpuError(`${this.label}: gradient ${shapeString(grad.shape)} for parameter '${name}' ${shapeString(param.shape)}`);
        const state = this.states.get(name) ?? this.setState(name, this.stateNames.map(() => Tensor.zeros([end - begin])), 0);
        state.step++;
        return this.piecesOf(entry, begin, end, grad, state.tensors, state.step);
      });
      const slots = this.slots(deviceLimits());
      for (let i = 0; i < pieces.length;) {
        let j = i + 1;
        const joins = (p: Piece) => (!this.stepPerDispatch || p.step === pieces[i].step) && p.entry !== pieces[j - 1].entry;
        while (j < pieces.length && j - i < slots && joins(pieces[j])) j++;
        this.update(pieces.slice(i, j), gradScale);
        i = j;
      }
    }));
  }

  zeroGrad(): void { zeroGrad(this.entries.map((e) => e.param)); }

  stateBytes(): number { return this.ranges.reduce((s, r) => s + 4 * this.stateNames.length * (r.end - r.begin), 0); }

  async stateDict(): Promise<OptimizerStateDict> {
    const dict: OptimizerStateDict = { kind: this.kind, step: {}, tensors: {} };
    await Promise.all([...this.states].map(async ([name, s]) => {
      dict.step[name] = s.step;
      await Promise.all(this.stateNames.map(async (k, j) => { dict.tensors[`${name}.${k}`] = (await s.tensors[j].toArray()) as Float32Array; }));
    }));
    return dict;
  }

  /** Replaces every state with the dict's; a parameter the dict does not name starts afresh. Reports all mismatches at once. */
  loadStateDict(dict: OptimizerStateDict): void {
    const problems: string[] = [];
    if (dict.kind !== this.kind) problems.push(`the dict is of optimizer ${JSON.stringify(dict.kind)}, this one is '${this.kind}'`);
    const known = new Set<string>();
    const keysOf = (name: string) => this.stateNames.map((k) => `${name}.${k}`);
    this.entries.forEach(({ name }, i) => {
      const keys = keysOf(name);
      keys.forEach((k) => known.add(k));
      const present = (Object.hasOwn(dict.step, name) ? 1 : 0) + keys.filter((k) => Object.hasOwn(dict.tensors, k)).length;
      if (present !== 0 && present !== keys.length + 1) problems.push(`'${name}' needs all of ${keys.join(', ')} and a step, or none`);
      const length = this.ranges[i].end - this.ranges[i].begin;
      for (const k of keys) {
        if (Object.hasOwn(dict.tensors, k) && dict.tensors[k].length !== length) problems.push(`${k} has ${dict.tensors[k].length} elements, this shard holds ${length}`);
      }
      const step = dict.step[name];
      if (Object.hasOwn(dict.step, name) && !(Number.isInteger(step) && step >= 1)) problems.push(`step of '${name}' is ${step}`);
    });
    for (const k of Object.keys(dict.tensors)) if (!known.has(k)) problems.push(`${k} names no parameter of this optimizer`);
    for (const name of Object.keys(dict.step)) if (!known.has(keysOf(name)[0])) problems.push(`step of '${name}' names no parameter of this optimizer`);
    if (problems.length) throw new GpuError(`${this.label}.loadStateDict: ${problems.join('; ')}`);
    this.dispose();
    this.entries.forEach(({ name }, i) => {
      if (!Object.hasOwn(dict.step, name)) return;
      const shape = [this.ranges[i].end - this.ranges[i].begin];
      this.setState(name, keysOf(name).map((k) => Tensor.fromArray(dict.tensors[k], shape)), dict.step[name]);
    });
  }

  dispose(): void {
    for (const s of this.states.values()) for (const t of s.tensors) t.dispose();
    this.states.clear();
  }

  private setState(name: string, tensors: Tensor[], step: number): ParamState {
    tensors.forEach((t, j) => { t.keep().name = `${name}.${this.stateNames[j]}`; });
    const state = { tensors, step };
    this.states.set(name, state);
    return state;
  }
}

export interface AdamWOptions { lr: number; betas: [number, number]; eps: number; weightDecay: number }

/** torch.optim.AdamW: decoupled decay p *= 1 - lr·wd on the entries with `decay`, bias-corrected moments m and v. */
export class AdamW extends ElementwiseOptimizer {
  readonly kind = 'adamw';
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;

  constructor(entries: readonly OptimizerEntry[], options: AdamWOptions, shard: ShardSpec = { shardIndex: 0, shardCount: 1 }) {
    const { lr, betas, eps, weightDecay } = options;
    const problems: string[] = [];
    betas.forEach((b, i) => { if (!(b >= 0 && b < 1)) problems.push(`betas[${i}] ${b} not in [0, 1)`); });
    if (!(eps >= 0)) problems.push(`eps ${eps} < 0`);
    if (!(weightDecay >= 0)) problems.push(`weightDecay ${weightDecay} < 0`);
    super('AdamW', ['m', 'v'], entries, lr, problems, shard);
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.weightDecay = weightDecay;
  }

  protected readonly stepPerDispatch = true;
  protected slots(limits: DeviceLimits): number { return adamwSlots(limits); }

  protected update(pieces: readonly Piece[], gradScale: number): void {
    const [beta1, beta2] = this.betas;
    const { step } = pieces[0];
    const ranges = pieces.map(({ n, offset, entry }) => ({ n, offset, decayFactor: entry.decay ? 1 - this.lr * this.weightDecay : 1 }));
    launch(adamwCall(deviceLimits(), ranges, {
      beta1, beta2, eps: this.eps, stepSize: this.lr / (1 - beta1 ** step), bc2Sqrt: Math.sqrt(1 - beta2 ** step), gradScale,
    }, elementwiseShape(), inQuads(pieces)), pieces.map((p) => p.grad), pieces.flatMap((p) => [p.param, ...p.states]));
  }
}

export interface RMSpropOptions { lr: number; alpha: number; eps: number; weightDecay: number }

/**
 * torch.optim.RMSprop without momentum, not centered: g = g + wd·p (coupled decay, on the entries with `decay`),
 * v = alpha·v + (1 - alpha)·g², p -= lr·g / (sqrt(v) + eps). Its state is `square_avg`.
 */
export class RMSprop extends ElementwiseOptimizer {
  readonly kind = 'rmsprop';
  readonly alpha: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(entries: readonly OptimizerEntry[], options: RMSpropOptions, shard: ShardSpec = { shardIndex: 0, shardCount: 1 }) {
    const { lr, alpha, eps, weightDecay } = options;
    const problems: string[] = [];
    if (!(alpha >= 0 && alpha <= 1)) problems.push(`alpha ${alpha} not in [0, 1]`);
    if (!(eps >= 0)) problems.push(`eps ${eps} < 0`);
    if (!(weightDecay >= 0)) problems.push(`weightDecay ${weightDecay} < 0`);
    super('RMSprop', ['square_avg'], entries, lr, problems, shard);
    this.alpha = alpha;
    this.eps = eps;
    this.weightDecay = weightDecay;
  }

  protected readonly stepPerDispatch = false;
  protected slots(limits: DeviceLimits): number { return rmspropSlots(limits); }

  protected update(pieces: readonly Piece[], gradScale: number): void {
    const ranges = pieces.map(({ n, offset, entry }) => ({ n, offset, weightDecay: entry.decay ? this.weightDecay : 0 }));
    launch(rmspropCall(deviceLimits(), ranges, { alpha: this.alpha, eps: this.eps, lr: this.lr, gradScale }, elementwiseShape(), inQuads(pieces)),
      pieces.map((p) => p.grad), pieces.flatMap((p) => [p.param, ...p.states]));
  }

}

/** Options of either optimizer; what is left out takes torch's defaults (AdamW betas 0.9/0.999, wd 0.01; RMSprop alpha 0.99, wd 0; eps 1e-8). */
export interface OptimizerOptions { lr: number; weightDecay?: number; eps?: number; betas?: [number, number]; alpha?: number }

/** The optimizer named `kind` ('adamw' | 'rmsprop') over the entries (e.g. ParameterSet.entries()). */
export function makeOptimizer(kind: OptimizerKind, entries: readonly OptimizerEntry[], options: OptimizerOptions, shard?: ShardSpec): Optimizer {
  const eps = options.eps ?? 1e-8;
  switch (kind) {
    case 'adamw':
      return new AdamW(entries, { lr: options.lr, betas: options.betas ?? [0.9, 0.999], eps, weightDecay: options.weightDecay ?? 0.01 }, shard);
    case 'rmsprop':
      return new RMSprop(entries, { lr: options.lr, alpha: options.alpha ?? 0.99, eps, weightDecay: options.weightDecay ?? 0 }, shard);
    default:
      throw new GpuError(`unknown optimizer ${JSON.stringify(kind)} (known: ${OPTIMIZER_KINDS.join(', ')})`);
  }
}
