// Kernels that take several tensors in one dispatch (torch's multi-tensor apply, the `_foreach` ops): the optimizer
// updates, the gradient norm and the norms' weight-gradient column sums, which would otherwise cost a dispatch each. WGSL cannot index bindings, so
// each tensor is a slot with bindings of its own, and a switch on the workgroup's slot passes them to one function
// (unrestricted_pointer_parameters). Slots take consecutive runs of workgroups: slot s owns [end of s - 1, end of s).
// A variant is compiled per slot count, so that a dispatch binds exactly the slots it declares.
import { elementsPerThread, grid1d, KernelError, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall, type ParamType } from './spec.ts';

/** The most slots of a dispatch (its uniform holds 16 bytes a slot). */
export const MAX_SLOTS = 16;

/** Slots a dispatch can hold with `perSlot` storage buffers each beside `shared` others, within the device's storage buffers. */
export function slotsPerDispatch(limits: Pick<DeviceLimits, 'maxStorageBuffersPerShaderStage'>, perSlot: number, shared = 0): number {
  return Math.max(1, Math.min(MAX_SLOTS, Math.floor((limits.maxStorageBuffersPerShaderStage - shared) / perSlot)));
}

type Field = readonly [string, ParamType];

/** A slot kernel: its file, its bindings per slot and beside them, and the 16 bytes of uniform a slot has (`struct Slot`). */
export interface SlotKernelSpec {
  name: string;
  moduleUrl: string;
  file: string;
  includes?: readonly string[];
  /** Each slot's bindings, suffixed by its index (grad0, param0, m0, grad1, ...): read-only, then read-write. */
  slotInputs: readonly string[];
  slotOutputs: readonly string[];
  /** Read-write bindings after the slots' (e.g. the partial sums all slots write). */
  outputs?: readonly string[];
  /** `struct Slot`'s four 4-byte fields (a uniform array's 16-byte stride), then the dispatch's own parameters. */
  slotFields: readonly [Field, Field, Field, Field];
  params?: readonly Field[];
  constants?: readonly string[];
  /** Slot s's switch arm: the kernel's function called with the slot's bindings (e.g. `update(&grad0, &param0, first, slot)`). */
  call: (s: number) => string;
}

/**
 * What a slot binding's array holds: f32 words, or vec4f quads for a kernel whose arithmetic is elementwise (AdamW):
 * on a CPU driver a load or store costs the same for a word or a quad.
 */
export type SlotValue = 'f32' | 'vec4f';

const kernels = new Map<SlotKernelSpec, Map<string, Kernel>>();

/**
 * The kernel of `slots` slots. Its file's markers: {{SLOTS}} and {{VALUE}} (in tensor_slots.wgsl, always included),
 * {{STORAGE}} the storage declarations (arrays of `value`, numbered as the spec binds them), {{PARAMS_BINDING}} the
 * uniform's, {{CASES}} the arms.
 */
export function slotKernel(spec: SlotKernelSpec, slots: number, value: SlotValue = 'f32'): Kernel {
  let variants = kernels.get(spec);
  if (!variants) kernels.set(spec, (variants = new Map()));
  let k = variants.get(`${slots} ${value}`);
  if (k) return k;
  const suffixed = (names: readonly string[]) => Array.from({ length: slots }, (_, s) => names.map((n) => `${n}${s}`)).flat();
  const inputs = suffixed(spec.slotInputs), outputs = [...suffixed(spec.slotOutputs), ...(spec.outputs ?? [])];
  const declare = (name: string, i: number, access: string) => `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${value}>;`;
  const placeholders = {
    SLOTS: slots,
    VALUE: value,
    STORAGE: [...inputs.map((n, i) => declare(n, i, 'read')), ...outputs.map((n, i) => declare(n, inputs.length + i, 'read_write'))].join('\n'),
    PARAMS_BINDING: inputs.length + outputs.length,
    CASES: Array.from({ length: slots }, (_, s) => `    case ${s}u: { ${spec.call(s)}; }`).join('\n'),
  };
  variants.set(`${slots} ${value}`, (k = {
    name: spec.name,
    source: wgsl(spec.moduleUrl, spec.file, { directives: ['requires unrestricted_pointer_parameters;'], includes: [...(spec.includes ?? []), 'tensor_slots.wgsl'], placeholders }),
    inputs,
    outputs,
    params: [...suffixed(spec.slotFields.map(([n]) => n)).map((n, i): [string, ParamType] => [n, spec.slotFields[i % 4][1]]), ...(spec.params ?? [])],
    constants: spec.constants,
  }));
  return k;
}

/**
 * The call of a slot kernel over `slots` (one object of `struct Slot`'s values each, but `end`), slot s taking
 * groups(s) workgroups: the uniform's values (each slot's, with its `end`, then `params`) and a grid of them all.
 */
export function slotCall(limits: DeviceLimits, spec: SlotKernelSpec, slots: readonly Readonly<Record<string, number>>[], groups: (s: number) => number,
  params: Record<string, number>, rest: Pick<KernelCall, 'constants' | 'cost' | 'op'>, value: SlotValue = 'f32'): KernelCall {
  const values: Record<string, number> = { ...params };
  let end = 0;
  slots.forEach((slot, s) => {
    end += groups(s);
    for (const [name] of spec.slotFields) values[`${name}${s}`] = name === 'end' ? end : slot[name];
  });
  return { kernel: slotKernel(spec, slots.length, value), params: values, workgroups: grid1d(end, 1, limits), ...rest };
}

/** A range of an elementwise slot kernel (elementwise_slots.wgsl): n elements from offset, and the slot's own field. */
export type SlotRange = Readonly<Record<string, number>> & { readonly n: number; readonly offset: number };

/** Whether ranges can be taken in quads (elementwiseSlotCall's `quads`): every count and offset a multiple of 4. */
export function rangesFitQuads(ranges: readonly { n: number; offset: number }[]): boolean { return ranges.every((r) => r.n % 4 === 0 && r.offset % 4 === 0); }

/**
 * An elementwise slot kernel's call (the optimizers'): each thread takes up to the shape's perThread elements of its
 * slot. `quads`: the bindings as vec4f quads and the ranges counted in them (rangesFitQuads; the bound tensors hold
 * whole quads), the same arithmetic lane by lane, so the same bits; on a CPU driver four elements a load.
 */
export function elementwiseSlotCall(limits: DeviceLimits, spec: SlotKernelSpec, ranges: readonly SlotRange[], params: Record<string, number>,
  shape: ElementwiseShape, quads: boolean, cost: KernelCall['cost']): KernelCall {
  if (quads && !rangesFitQuads(ranges)) throw new KernelError(`${spec.name} in quads: ranges ${JSON.stringify(ranges.map(({ n, offset }) => ({ n, offset })))} are not all multiples of 4`);
  const width = quads ? 4 : 1;
  const slots = ranges.map((r) => ({ ...r, n: r.n / width, offset: r.offset / width }));
  const perThread = elementsPerThread(slots.reduce((a, r) => a + r.n, 0), shape);
  return slotCall(limits, spec, slots, (s) => Math.ceil(slots[s].n / (shape.threads * perThread)), { ...params, perThread },
    { constants: { WG: shape.threads }, cost }, quads ? 'vec4f' : 'f32');
}
