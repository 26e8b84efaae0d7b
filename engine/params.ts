// Parameters planned from one table: name, shape, role and weight-decay flag. Sizes of parameters,
// gradients and optimizer states all come from here, so the memory plan can be printed before allocation.
import { GpuError } from './gpu.ts';
import { Tensor, numelOf, shapeString } from './tensor.ts';
import type { HalfBits } from '../kernels/dtype.ts';

export type ParamRole = 'embedding' | 'weight' | 'bias' | 'norm' | 'head';

export interface ParamSpec {
  name: string; // transformers' name, so that loading is a lookup
  shape: number[];
  role: ParamRole;
  decay: boolean; // AdamW weight decay applies
}

export function param(name: string, shape: number[], role: ParamRole): ParamSpec {
  return { name, shape, role, decay: role === 'weight' || role === 'embedding' || role === 'head' };
}

export interface MemoryPlan { parameters: number; parameterBytes: number; gradientBytes: number; optimizerBytes: number }

/** f32 parameters, f32 gradients, AdamW's two f32 moments. */
export function memoryPlan(specs: ParamSpec[]): MemoryPlan {
  const parameters = specs.reduce((s, p) => s + numelOf(p.shape), 0);
  return { parameters, parameterBytes: 4 * parameters, gradientBytes: 4 * parameters, optimizerBytes: 8 * parameters };
}

/** A parameter kept in 16-bit storage: frozen (no gradient), e.g. a reference model or 7B inference. */
/** Frozen 16-bit parameters come as HalfBits (kernels/dtype.ts). */

/** The live parameter tensors of a model, in table order. f32 values train; 16-bit ones are frozen. */
export class ParameterSet {
  readonly tensors = new Map<string, Tensor>();

  constructor(readonly specs: ParamSpec[], values: (spec: ParamSpec) => Float32Array | HalfBits) {
    const seen = new Set<string>();
    for (const s of specs) {
      if (seen.has(s.name)) throw new GpuError(`parameter table names '${s.name}' twice`);
      seen.add(s.name);
      const data = values(s);
      const n = data instanceof Float32Array ? data.length : data.bits.length;
      if (n !== numelOf(s.shape)) throw new GpuError(`parameter '${s.name}': ${n} values for shape ${shapeString(s.shape)}`);
      const t = (data instanceof Float32Array ? Tensor.fromArray(data, s.shape) : Tensor.fromBits(data.bits, s.shape, data.dtype)).keep();
      t.requiresGrad = data instanceof Float32Array;
      t.name = s.name;
      this.tensors.set(s.name, t);
    }
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new GpuError(`no parameter named '${name}'`);
    return t;
  }

  /** Entries for the optimizer (the trainable, f32 parameters): the table decides decay, never tensor order. */
  entries(): { name: string; param: Tensor; decay: boolean }[] {
    return this.specs.filter((s) => this.get(s.name).requiresGrad).map((s) => ({ name: s.name, param: this.get(s.name), decay: s.decay }));
  }

  all(): Tensor[] { return [...this.tensors.values()]; }

  dispose(): void {
    for (const t of this.tensors.values()) { t.grad?.dispose(); t.grad = null; t.dispose(); }
    this.tensors.clear();
  }
}
