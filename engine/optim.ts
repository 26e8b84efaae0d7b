// AdamW with torch.optim.AdamW's semantics: one fused kernel per parameter (or per shard of one), moments
// in f32 allocated on a parameter's first step, step counts and bias corrections on the host.
import { zeroGrad } from './autodiff.ts';
import { GpuError } from './gpu.ts';
import { deviceLimits, launch } from './launch.ts';
import { ledger } from './ledger.ts';
import { Tensor, shapeString } from './tensor.ts';
import { adamwCall } from '../kernels/adamw.ts';

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

/** One optimized tensor; the model's parameter table decides `decay` (e.g. none on biases and norms). */
export interface OptimizerEntry { name: string; param: Tensor; decay: boolean }

export interface AdamWOptions { lr: number; betas: [number, number]; eps: number; weightDecay: number }

/** Which shard of every parameter this optimizer owns (its moments cover only that range). */
export interface ShardSpec { shardIndex: number; shardCount: number }

/**
 * A checkpoint of the moments: `${name}.m` and `${name}.v` (this shard's range), and each parameter's
 * own step count (torch counts per parameter: one that had no gradient at a step is not advanced).
 */
export interface AdamWStateDict { step: Record<string, number>; tensors: Record<string, Float32Array> }

interface ParamState { m: Tensor; v: Tensor; step: number }

export class AdamW {
  /** Mutable, for learning-rate schedules. */
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly ranges: { begin: number; end: number }[];
  private readonly states = new Map<string, ParamState>();

  constructor(readonly entries: readonly OptimizerEntry[], options: AdamWOptions, readonly shard: ShardSpec = { shardIndex: 0, shardCount: 1 }) {
    const { lr, betas, eps, weightDecay } = options;
    const problems: string[] = [];
    if (!(lr >= 0)) problems.push(`lr ${lr} < 0`);
    betas.forEach((b, i) => { if (!(b >= 0 && b < 1)) problems.push(`betas[${i}] ${b} not in [0, 1)`); });
    if (!(eps >= 0)) problems.push(`eps ${eps} < 0`);
    if (!(weightDecay >= 0)) problems.push(`weightDecay ${weightDecay} < 0`);
    const names = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) problems.push(`parameter '${e.name}' listed twice`);
      names.add(e.name);
      if (e.param.dtype !== 'f32') problems.push(`parameter '${e.name}' is ${e.param.dtype} ${shapeString(e.param.shape)}, not f32`);
    }
    if (problems.length) throw new GpuError(`AdamW: ${problems.join('; ')}`);
    this.lr = lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.ranges = entries.map((e) => shardOf(e.param.numel, shard.shardIndex, shard.shardCount));
  }

  /** Updates this shard of every parameter that has a gradient; parameters without one are skipped, as torch does. */
  step(): void {
    ledger.inPhase('optimizer', () => {
      const [beta1, beta2] = this.betas;
      this.entries.forEach(({ name, param, decay }, i) => {
        const grad = param.grad;
        const { begin, end } = this.ranges[i];
        if (!grad || begin === end) return;
        if (grad.numel !== param.numel) throw new GpuError(`AdamW: gradient ${shapeString(grad.shape)} for parameter '${name}' ${shapeString(param.shape)}`);
        const state = this.states.get(name) ?? this.setState(name, Tensor.zeros([end - begin]), Tensor.zeros([end - begin]), 0);
        state.step++;
        launch(adamwCall(deviceLimits(), end - begin, begin, {
          beta1, beta2, eps: this.eps,
          decayFactor: decay ? 1 - this.lr * this.weightDecay : 1,
          stepSize: this.lr / (1 - beta1 ** state.step),
          bc2Sqrt: Math.sqrt(1 - beta2 ** state.step),
        }), [grad], [param, state.m, state.v]);
      });
    });
  }

  zeroGrad(): void { zeroGrad(this.entries.map((e) => e.param)); }

  /** Bytes of m and v for this shard of every parameter, once each has taken a step. */
  stateBytes(): number { return this.ranges.reduce((s, r) => s + 8 * (r.end - r.begin), 0); }

  async stateDict(): Promise<AdamWStateDict> {
    const dict: AdamWStateDict = { step: {}, tensors: {} };
    await Promise.all([...this.states].map(async ([name, s]) => {
      dict.step[name] = s.step;
      dict.tensors[`${name}.m`] = (await s.m.toArray()) as Float32Array;
      dict.tensors[`${name}.v`] = (await s.v.toArray()) as Float32Array;
    }));
    return dict;
  }

  /** Replaces every state with the dict's; a parameter the dict does not name starts afresh. Reports all mismatches at once. */
  loadStateDict(dict: AdamWStateDict): void {
    const problems: string[] = [];
    const known = new Set<string>();
    this.entries.forEach(({ name }, i) => {
      const keys = [`${name}.m`, `${name}.v`];
      keys.forEach((k) => known.add(k));
      const present = (Object.hasOwn(dict.step, name) ? 1 : 0) + keys.filter((k) => Object.hasOwn(dict.tensors, k)).length;
      if (present !== 0 && present !== 3) problems.push(`'${name}' needs all of ${keys.join(', ')} and a step, or none`);
      const length = this.ranges[i].end - this.ranges[i].begin;
      for (const k of keys) {
        if (Object.hasOwn(dict.tensors, k) && dict.tensors[k].length !== length) problems.push(`${k} has ${dict.tensors[k].length} elements, this shard holds ${length}`);
      }
      const step = dict.step[name];
      if (Object.hasOwn(dict.step, name) && !(Number.isInteger(step) && step >= 1)) problems.push(`step of '${name}' is ${step}`);
    });
    for (const k of Object.keys(dict.tensors)) if (!known.has(k)) problems.push(`${k} names no parameter of this optimizer`);
    for (const name of Object.keys(dict.step)) if (!known.has(`${name}.m`)) problems.push(`step of '${name}' names no parameter of this optimizer`);
    if (problems.length) throw new GpuError(`AdamW.loadStateDict: ${problems.join('; ')}`);
    this.dispose();
    this.entries.forEach(({ name }, i) => {
      if (!Object.hasOwn(dict.step, name)) return;
      const shape = [this.ranges[i].end - this.ranges[i].begin];
      this.setState(name, Tensor.fromArray(dict.tensors[`${name}.m`], shape), Tensor.fromArray(dict.tensors[`${name}.v`], shape), dict.step[name]);
    });
  }

  /** Frees the moments; the optimizer starts afresh if stepped again. */
  dispose(): void {
    for (const s of this.states.values()) { s.m.dispose(); s.v.dispose(); }
    this.states.clear();
  }

  private setState(name: string, m: Tensor, v: Tensor, step: number): ParamState {
    m.keep().name = `${name}.m`;
    v.keep().name = `${name}.v`;
    const state = { m, v, step };
    this.states.set(name, state);
    return state;
  }
}
