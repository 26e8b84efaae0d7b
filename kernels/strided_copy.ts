// Dense <-> strided copies: the one kernel behind permute, narrow and their backwards.
import { ELEMENTWISE_SHAPES, elementsPerThread, grid1d, loadWgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const stridedCopyKernel: Kernel = {
  name: 'stridedCopy',
  source: loadWgsl(import.meta.url, 'strided_copy.wgsl'),
  inputs: ['x'],
  outputs: ['y'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'], ['s0', 'u32'], ['s1', 'u32'], ['s2', 'u32'], ['s3', 'u32'], ['offset', 'u32']],
  constants: ['GATHER', 'WG'],
};

/**
 * denseDims and strides of rank 4; gather reads the strided side into the dense one, scatter the reverse. `shape`: the
 * device's elementwise shape, its threads a workgroup and up to its perThread consecutive elements an invocation.
 */
export function stridedCopyCall(limits: DeviceLimits, direction: 'gather' | 'scatter', denseDims: number[], strides: number[], offset: number, op: string,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = denseDims.reduce((a, b) => a * b, 1);
  const perThread = elementsPerThread(n, shape);
  return {
    kernel: stridedCopyKernel, op, constants: { GATHER: direction === 'gather' ? 1 : 0, WG: shape.threads },
    params: { n, perThread, d1: denseDims[1], d2: denseDims[2], d3: denseDims[3], s0: strides[0], s1: strides[1], s2: strides[2], s3: strides[3], offset },
    workgroups: grid1d(Math.ceil(n / perThread), shape.threads, limits),
    cost: { flops: 0, bytesRead: 4 * n, bytesWritten: 4 * n },
  };
}
