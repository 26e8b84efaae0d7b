// Broadcasting binary elementwise: add, subtract, multiply, divide over up to 4 dims.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export type BinaryOp = keyof typeof BINARY_OPS;

export const binaryKernel: Kernel = {
  name: 'binary',
  source: loadWgsl(import.meta.url, 'binary.wgsl'),
  inputs: ['a', 'b'],
  outputs: ['out'],
  params: [['n', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'],
    ['sa0', 'u32'], ['sa1', 'u32'], ['sa2', 'u32'], ['sa3', 'u32'],
    ['sb0', 'u32'], ['sb1', 'u32'], ['sb2', 'u32'], ['sb3', 'u32']],
  constants: ['OP', 'WG'],
};

const WG = 256;

/** outDims: the output shape padded to rank 4; aStrides/bStrides: element strides, 0 along broadcast dims. */
export function binaryCall(limits: DeviceLimits, op: BinaryOp, outDims: number[], aStrides: number[], bStrides: number[], aNumel: number, bNumel: number): KernelCall {
  const n = outDims.reduce((x, y) => x * y, 1);
  return {
    kernel: binaryKernel,
    op,
    constants: { OP: BINARY_OPS[op], WG },
    params: { n, d1: outDims[1], d2: outDims[2], d3: outDims[3],
      sa0: aStrides[0], sa1: aStrides[1], sa2: aStrides[2], sa3: aStrides[3],
      sb0: bStrides[0], sb1: bStrides[1], sb2: bStrides[2], sb3: bStrides[3] },
    workgroups: grid1d(n, WG, limits),
    // Each output element: one flop; reads each operand once from memory (broadcast reuse is cached).
    cost: { flops: n, bytesRead: 4 * (aNumel + bNumel), bytesWritten: 4 * n },
  };
}
