// Parameters planned from one table: name, shape, role, weight-decay flag, and whether the tensor trains.
// Sizes of parameters, gradients and optimizer states all come from here, so the memory plan can be printed
// before allocation, and the optimizer's entries are the table's trainable rows.
import { GpuError } from './gpu.ts';
import { shardOf } from './optim.ts';
import { Tensor, numelOf, shapeString } from './tensor.ts';
import type { FloatDType, HalfBits } from '../kernels/dtype.ts';

export type ParamRole = 'embedding' | 'weight' | 'bias' | 'norm' | 'head';

export interface ParamSpec {
  name: string; // transformers' (or PEFT's) name, so that loading is a lookup
  shape: number[];
  role: ParamRole;
  decay: boolean; // weight decay applies: tensors of rank >= 2 (matrices, embeddings), never biases or norms
  /** Gets a gradient and an optimizer state. 16-bit storage is frozen, so a trainable tensor is f32. */
  trainable: boolean;
  /** A LoRA adapter (lora_A / lora_B) added on top of a frozen base. */
  adapter: boolean;
}

export function param(name: string, shape: number[], role: ParamRole, opts: { trainable?: boolean; adapter?: boolean } = {}): ParamSpec {
  return {
    name, shape, role, decay: shape.length >= 2,
    trainable: opts.trainable ?? true, adapter: opts.adapter ?? false,
  };
}

/** The matrices (embeddings, projections, heads): what 16-bit loading stores in 16 bits. Norms and biases stay f32. */
export function isMatrix(s: ParamSpec): boolean { return s.role === 'weight' || s.role === 'embedding' || s.role === 'head'; }

/** The storage of a parameter when the matrices are asked for in `weightDtype`: only frozen matrices can be 16-bit. */
export function storageDtypeOf(s: ParamSpec, weightDtype: FloatDType = 'f32'): FloatDType {
  return weightDtype !== 'f32' && isMatrix(s) && !s.trainable ? weightDtype : 'f32';
}

export interface MemoryPlan {
  parameters: number;
  trainableParameters: number;
  /** Bytes of all the weights, and by storage dtype. */
  weightBytes: number;
  weightBytesByDtype: Partial<Record<FloatDType, number>>;
  /** f32 gradients of the trainable tensors, whole on every shard (the AdamW step reads its slice of them). */
  gradientBytes: number;
  /** AdamW's two f32 moments of the trainable tensors, on one shard: the largest (shard 0) when sharded. */
  optimizerBytes: number;
  shards: number;
}

/**
 * Bytes of weights (frozen matrices in `weightDtype`, everything else f32), f32 gradients and AdamW moments
 * of the trainable tensors; with `shards` the moments are split as the sharded optimizer splits them (shardOf).
 */
export function memoryPlan(specs: readonly ParamSpec[], opts: { weightDtype?: FloatDType; shards?: number } = {}): MemoryPlan {
  const shards = opts.shards ?? 1;
  const plan: MemoryPlan = { parameters: 0, trainableParameters: 0, weightBytes: 0, weightBytesByDtype: {}, gradientBytes: 0, optimizerBytes: 0, shards };
  for (const s of specs) {
    const n = numelOf(s.shape), dtype = storageDtypeOf(s, opts.weightDtype);
    const bytes = (dtype === 'f32' ? 4 : 2) * n;
    plan.parameters += n;
    plan.weightBytes += bytes;
    plan.weightBytesByDtype[dtype] = (plan.weightBytesByDtype[dtype] ?? 0) + bytes;
    if (!s.trainable) continue;
    const { begin, end } = shardOf(n, 0, shards);
    plan.trainableParameters += n;
    plan.gradientBytes += 4 * n;
    plan.optimizerBytes += 8 * (end - begin);
  }
  return plan;
}

/** '*' any run of characters (dots included), '?' one character; a RegExp is used as it is. */
function namePattern(pattern: string | RegExp): RegExp {
  if (pattern instanceof RegExp) return pattern;
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** The live parameter tensors of a model, in table order. The table says what trains; 16-bit values are frozen. */
export class ParameterSet {
  readonly tensors = new Map<string, Tensor>();
  /** The table, one copy owned by this set: freeze and unfreeze change `trainable` here. */
  readonly specs: ParamSpec[];

  constructor(specs: readonly ParamSpec[], values: (spec: ParamSpec) => Float32Array | HalfBits) {
    this.specs = [];
    this.add(specs, values);
  }

  /** Appends rows to the table with their values (e.g. LoRA adapters on a loaded base); every name must be new. */
  add(specs: readonly ParamSpec[], values: (spec: ParamSpec) => Float32Array | HalfBits): void {
    const seen = new Set(this.tensors.keys());
    for (const spec of specs) {
      const s = { ...spec };
      if (seen.has(s.name)) throw new GpuError(`parameter table names '${s.name}' twice`);
      seen.add(s.name);
      const data = values(s);
      const n = data instanceof Float32Array ? data.length : data.bits.length;
      if (n !== numelOf(s.shape)) throw new GpuError(`parameter '${s.name}': ${n} values for shape ${shapeString(s.shape)}`);
      if (!(data instanceof Float32Array) && s.trainable)
        throw new GpuError(`parameter '${s.name}' ${shapeString(s.shape)} is ${data.dtype} but the table says trainable; 16-bit storage is frozen: load it in f32 or mark it trainable: false`);
      const t = (data instanceof Float32Array ? Tensor.fromArray(data, s.shape) : Tensor.fromBits(data.bits, s.shape, data.dtype)).keep();
      t.requiresGrad = s.trainable;
      t.name = s.name;
      this.tensors.set(s.name, t);
      this.specs.push(s);
    }
  }

  /** Drops the rows whose names match (a glob or RegExp) and disposes their tensors; returns how many matched. */
  remove(pattern: string | RegExp): number {
    const re = namePattern(pattern);
    const gone = this.specs.filter((s) => re.test(s.name));
    for (const s of gone) {
      const t = this.get(s.name);
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
      this.tensors.delete(s.name);
    }
    this.specs.splice(0, this.specs.length, ...this.specs.filter((s) => !re.test(s.name)));
    return gone.length;
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new GpuError(`no parameter named '${name}'`);
    return t;
  }

  /** Stops training the parameters whose names match (a glob or RegExp); returns how many matched. */
  freeze(pattern: string | RegExp): number { return this.setTrainable(pattern, false); }

  /** Trains the parameters whose names match again; a 16-bit one is an error. Returns how many matched. */
  unfreeze(pattern: string | RegExp): number { return this.setTrainable(pattern, true); }

  /** Entries for the optimizer: the table's trainable rows, its decay flags, never tensor order. */
  entries(): { name: string; param: Tensor; decay: boolean }[] {
    return this.specs.filter((s) => s.trainable).map((s) => ({ name: s.name, param: this.get(s.name), decay: s.decay }));
  }

  all(): Tensor[] { return [...this.tensors.values()]; }

  dispose(): void {
    for (const t of this.tensors.values()) { t.grad?.dispose(); t.grad = null; t.dispose(); }
    this.tensors.clear();
  }

  private setTrainable(pattern: string | RegExp, trainable: boolean): number {
    const re = namePattern(pattern);
    const matched = this.specs.filter((s) => re.test(s.name));
    const what = trainable ? 'unfreeze' : 'freeze';
    if (matched.length === 0) throw new GpuError(`${what}(${String(pattern)}): matches no parameter (e.g. '${this.specs[0]?.name ?? 'none'}')`);
    const half = matched.filter((s) => this.get(s.name).dtype !== 'f32');
    if (trainable && half.length > 0)
      throw new GpuError(`unfreeze(${String(pattern)}): ${half.map((s) => `'${s.name}' (${this.get(s.name).dtype})`).join(', ')} in 16-bit storage, which is frozen; load in f32 to train`);
    for (const s of matched) {
      const t = this.get(s.name);
      s.trainable = trainable;
      t.requiresGrad = trainable;
      if (!trainable) { t.grad?.dispose(); t.grad = null; }
    }
    return matched.length;
  }
}
