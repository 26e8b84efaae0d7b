// Elementwise activations (GELU, SiLU), their gated form f(gate) · up (SwiGLU) and both backwards.
// The four kernels share activation_math.wgsl (the functions and their derivatives) and elementwise_main.wgsl, each in
// words or in quads (activation_word.wgsl, activation_quad.wgsl).
import { ELEMENTWISE_SHAPES, elementwiseQuadsLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const ACTIVATIONS = { gelu: 0, silu: 1, relu: 2 } as const;
export type Activation = keyof typeof ACTIVATIONS;

/** Each kernel in words (f32 elements) and in quads (vec4f, where the count divides by 4): activation_word.wgsl, activation_quad.wgsl. */
function activationVariants(name: string, file: string, inputs: string[], outputs: string[]): { word: Kernel; quad: Kernel } {
  const variant = (element: string): Kernel => ({
    name, source: wgsl(import.meta.url, file, { includes: ['activation_math.wgsl', element, 'elementwise_main.wgsl'] }),
    inputs, outputs, params: [['n', 'u32'], ['perThread', 'u32']], constants: ['FN', 'WG'],
  });
  return { word: variant('activation_word.wgsl'), quad: variant('activation_quad.wgsl') };
}

export const activationKernels = activationVariants('activation', 'activation.wgsl', ['x'], ['out']);
export const activationBackwardKernels = activationVariants('activationBackward', 'activation_backward.wgsl', ['x', 'dy'], ['dx']);
export const gatedActivationKernels = activationVariants('gatedActivation', 'gated_activation.wgsl', ['gate', 'up'], ['out']);
export const gatedActivationBackwardKernels = activationVariants('gatedActivationBackward', 'gated_activation_backward.wgsl', ['gate', 'up', 'dy'], ['dgate', 'dup']);

// FLOPs per element of f and of f', counting exp and division as one each: GELU's Φ is a degree-10
// polynomial in a rational argument plus the exponential (~32); SiLU's sigmoid is ~5; ReLU a max.
const FLOPS: Record<Activation, { value: number; derivative: number }> = {
  gelu: { value: 36, derivative: 37 },
  silu: { value: 6, derivative: 8 },
  relu: { value: 1, derivative: 0 }, // max(x, 0); its derivative is a select
};

/** FLOPs per element of f (as activationCall charges them). */
export function activationFlops(fn: Activation): number { return FLOPS[fn].value; }

function elementwise(limits: DeviceLimits, kernels: { word: Kernel; quad: Kernel }, fn: Activation, n: number, op: string, flopsPerElement: number, tensorsRead: number, tensorsWritten: number, shape: ElementwiseShape): KernelCall {
  const { quads, values, constants, perThread, workgroups } = elementwiseQuadsLaunch(limits, n, shape, op);
  return {
    kernel: quads ? kernels.quad : kernels.word, op, constants: { FN: ACTIVATIONS[fn], ...constants }, params: { n: values, perThread }, workgroups,
    cost: { flops: flopsPerElement * n, bytesRead: 4 * n * tensorsRead, bytesWritten: 4 * n * tensorsWritten },
  };
}

/** out = f(x) over n elements; ledger name `fn` ('gelu', 'silu'). */
export function activationCall(limits: DeviceLimits, fn: Activation, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, activationKernels, fn, n, fn, FLOPS[fn].value, 1, 1, shape);
}

/** dx = dy · f'(x); ledger name `${fn}Backward`. */
export function activationBackwardCall(limits: DeviceLimits, fn: Activation, n: number, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, activationBackwardKernels, fn, n, `${fn}Backward`, FLOPS[fn].derivative + 1, 2, 1, shape);
}

/** out = f(gate) · up; `op` names it in the ledger (e.g. 'swiglu' for f = SiLU). */
export function gatedActivationCall(limits: DeviceLimits, fn: Activation, n: number, op: string, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, gatedActivationKernels, fn, n, op, FLOPS[fn].value + 1, 2, 1, shape);
}

/** dgate = dy · up · f'(gate) and dup = dy · f(gate) in one pass; ledger name `${op}Backward`. */
export function gatedActivationBackwardCall(limits: DeviceLimits, fn: Activation, n: number, op: string, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  return elementwise(limits, gatedActivationBackwardKernels, fn, n, `${op}Backward`, FLOPS[fn].value + FLOPS[fn].derivative + 3, 3, 2, shape);
}
