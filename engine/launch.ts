// Runs a kernel call on tensors: the bridge between op code (tensors) and the runtime (buffer ranges).
import { gpu, type Gpu } from './gpu.ts';
import { dispatch } from './runtime.ts';
import type { Tensor } from './tensor.ts';
import { deviceLimitsOf, type DeviceLimits, type KernelCall } from '../kernels/spec.ts';

/** Inputs then outputs, in the kernel's binding order; null for one the kernel variant leaves out (absent). */
export function launch(call: KernelCall, inputs: (Tensor | null)[], outputs: (Tensor | null)[]): void {
  dispatch(call, inputs.map((t) => t?.binding() ?? null), outputs.map((t) => t?.binding() ?? null));
}

const limitsOf = new WeakMap<Gpu, DeviceLimits>();

/** This device's limits as the kernel specs read them (their calls take them as an argument). */
export function deviceLimits(): DeviceLimits {
  const g = gpu();
  let limits = limitsOf.get(g);
  if (!limits) limitsOf.set(g, (limits = deviceLimitsOf(g.limits)));
  return limits;
}
