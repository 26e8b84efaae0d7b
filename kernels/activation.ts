// Elementwise activations (GELU, SiLU), their gated form f(gate) · up (SwiGLU) and both backwards.
// The four kernels share activation_math.wgsl (the functions and their derivatives) and elementwise_main.wgsl.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const ACTIVATIONS = { gelu: 0, silu: 1, relu: 2 } as const;
export type Activation = keyof typeof ACTIVATIONS;

const withMath = (file: string): string => wgsl(import.meta.url, file, { includes: ['activation_math.wgsl', 'elementwise_main.wgsl'] });

export const activationKernel: Kernel = {
  name: 'activation', source: withMath('activation.wgsl'),
  inputs: ['x'], outputs: ['out'], params: [['n', 'u32'], ['perThread', 'u32']], constants: ['FN', 'WG'],
};

export const activationBackwardKernel: Kernel = {
  name: 'activationBackward', source: withMath('activation_backward.wgsl'),
  inputs: ['x', 'dy'], outputs: ['dx'], params: [['n', 'u32'], ['perThread', 'u32']], constants: ['FN', 'WG'],
};

export const gatedActivationKernel: Kernel = {
  name: 'gatedActivation', source: withMath('gated_activation.wgsl'),
  inputs: ['gate', 'up'], outputs: ['out'], params: [['n', 'u32'], ['perThread', 'u32']], constants: ['FN', 'WG'],
};

export const gatedActivationBackwardKernel: Kernel = {
  name: 'gatedActivationBackward', source: withMath('gated_activation_backward.wgsl'),
  inputs: ['gate', 'up', 'dy'], outputs: ['dgate', 'dup'], params: [['n', 'u32'], ['perThread', 'u32']], constants: ['FN', 'WG'],
};

// FLOPs per element of f and of f', counting exp and division as one each: GELU's Φ is a degree-10
// polynomial in a rational argument plus the exponential (~32); SiLU's sigmoid is ~5; ReLU a max.
const FLOPS: Record<Activation, { value: number; derivative: number }> = {
  gelu: { value: 36, derivative: 37 },
  silu: { value: 6, derivative: 8 },
  relu: { value: 1, derivative: 0 }, // max(x, 0); its derivative is a select
};

/** FLOPs per element of f (as activationCall charges them). */
export function activationFlops(fn: Activation): number { return FLOPS[fn].value; }

function elementwise(limits: DeviceLimits, kernel: Kernel, fn: Activation, n: number, op: string, flopsPerElement: number, tensorsRead: number, tensorsWritten: number, shape: ElementwiseShape): KernelCall {
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel, op, constants: { FN: ACTIVATIONS[fn], ...constants }, params: { n, perThread }, workgroups,
    cost: { flops: flopsPerElement * n, bytesRead: 4 * n * tensorsRead, bytesWritten: 4 * n * tensorsWritten },
  };
}

/** out = f(x) over n elements; ledger name `fn` ('gelu', 'silu'). */
export function activationCall(limits: DeviceLimits, fn: Activation, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, activationKernel, fn, n, fn, FLOPS[fn].value, 1, 1, shape);
}

/** dx = dy · f'(x); ledger name `${fn}Backward`. */
export function activationBackwardCall(limits: DeviceLimits, fn: Activation, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, activationBackwardKernel, fn, n, `${fn}Backward`, FLOPS[fn].derivative + 1, 2, 1, shape);
}

/** out = f(gate) · up; `op` names it in the ledger (e.g. 'swiglu' for f = SiLU). */
export function gatedActivationCall(limits: DeviceLimits, fn: Activation, n: number, op: string, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, gatedActivationKernel, fn, n, op, FLOPS[fn].value + 1, 2, 1, shape);
}

/** dgate = dy · up · f'(gate) and dup = dy · f(gate) in one pass; ledger name `${op}Backward`. */
export function gatedActivationBackwardCall(limits: DeviceLimits, fn: Activation, n: number, op: string, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, gatedActivationBackwardKernel, fn, n, `${op}Backward`, FLOPS[fn].value + FLOPS[fn].derivative + 3, 3, 2, shape);
}
