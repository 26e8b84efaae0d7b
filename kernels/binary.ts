// Binary elementwise: add, subtract, multiply, divide; broadcasting over up to 4 dims, or operands of one shape.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, elementwiseQuadsLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export type BinaryOp = keyof typeof BINARY_OPS;

export const binaryKernel: Kernel = {
  name: 'binary',
  source: wgsl(import.meta.url, 'binary.wgsl', { includes: ['binary_op.wgsl', 'elementwise_main.wgsl'], placeholders: { VALUE: 'f32' } }),
  inputs: ['a', 'b'],
  outputs: ['out'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'],
    ['sa0', 'u32'], ['sa1', 'u32'], ['sa2', 'u32'], ['sa3', 'u32'],
    ['sb0', 'u32'], ['sb1', 'u32'], ['sb2', 'u32'], ['sb3', 'u32']],
  constants: ['OP', 'WG'],
};

function sameShapeVariant(value: 'f32' | 'vec4f'): Kernel {
  return {
    name: 'binarySameShape',
    source: wgsl(import.meta.url, 'binary_same_shape.wgsl', { includes: ['binary_op.wgsl', 'elementwise_main.wgsl'], placeholders: { VALUE: value } }),
    inputs: ['a', 'b'],
    outputs: ['out'],
    params: [['n', 'u32'], ['perThread', 'u32']],
    constants: ['OP', 'WG'],
  };
}

export const binarySameShapeKernel = sameShapeVariant('f32');
export const binarySameShapeVec4Kernel = sameShapeVariant('vec4f');

/**
 * outDims: the output shape padded to rank 4; aStrides/bStrides: element strides, 0 along broadcast dims. Operands
 * with out's element count have out's shape (tensors are contiguous): they take the same-shape kernel.
 */
export function binaryCall(limits: DeviceLimits, op: BinaryOp, outDims: number[], aStrides: number[], bStrides: number[], aNumel: number, bNumel: number,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = outDims.reduce((x, y) => x * y, 1);
  if (aNumel === n && bNumel === n) return binarySameShapeCall(limits, op, n, n % 4 === 0, shape);
  return binaryBroadcastCall(limits, op, outDims, aStrides, bStrides, aNumel, bNumel, shape);
}

/** The broadcasting kernel for any operands (binaryCall's choice where they differ in shape). */
export function binaryBroadcastCall(limits: DeviceLimits, op: BinaryOp, outDims: number[], aStrides: number[], bStrides: number[], aNumel: number, bNumel: number,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = outDims.reduce((x, y) => x * y, 1);
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: binaryKernel,
    op,
    constants: { OP: BINARY_OPS[op], ...constants },
    params: { n, perThread, d1: outDims[1], d2: outDims[2], d3: outDims[3],
      sa0: aStrides[0], sa1: aStrides[1], sa2: aStrides[2], sa3: aStrides[3],
      sb0: bStrides[0], sb1: bStrides[1], sb2: bStrides[2], sb3: bStrides[3] },
    workgroups,
    // Each output element: one flop; reads each operand once from memory (broadcast reuse is cached).
    cost: { flops: n, bytesRead: 4 * (aNumel + bNumel), bytesWritten: 4 * n },
  };
}

/** n elements of two operands of one shape: a vec4 per invocation when n is a multiple of 4 (`vec4: false` forces scalars). */
export function binarySameShapeCall(limits: DeviceLimits, op: BinaryOp, n: number, vec4 = n % 4 === 0, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { quads, values, constants, perThread, workgroups } = elementwiseQuadsLaunch(limits, n, shape, 'binarySameShape', vec4);
  return {
    kernel: quads ? binarySameShapeVec4Kernel : binarySameShapeKernel,
    op,
    constants: { OP: BINARY_OPS[op], ...constants },
    params: { n: values, perThread },
    workgroups,
    cost: { flops: n, bytesRead: 8 * n, bytesWritten: 4 * n },
  };
}
