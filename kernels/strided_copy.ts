// Dense <-> strided copies: the one kernel behind permute, narrow and their backwards.
import { ELEMENTWISE_SHAPES, elementsPerThread, grid1d, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

function stridedCopyVariant(value: 'f32' | 'vec4f'): Kernel {
  return {
    name: 'stridedCopy',
    source: wgsl(import.meta.url, 'strided_copy.wgsl', { placeholders: { VALUE: value } }),
    inputs: ['x'],
    outputs: ['y'],
    params: [['n', 'u32'], ['perThread', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'], ['s0', 'u32'], ['s1', 'u32'], ['s2', 'u32'], ['s3', 'u32'], ['offset', 'u32']],
    constants: ['GATHER', 'WG'],
  };
}

export const stridedCopyKernel = stridedCopyVariant('f32');
/** The copy in vec4f quads, where the innermost dim is contiguous on both sides and every run starts on a quad. */
export const stridedCopyQuadsKernel = stridedCopyVariant('vec4f');

/**
 * denseDims and strides of rank 4; gather reads the strided side into the dense one, scatter the reverse. `shape`: the
 * device's elementwise shape, its threads a workgroup and up to its perThread consecutive elements an invocation.
 */
export function stridedCopyCall(limits: DeviceLimits, direction: 'gather' | 'scatter', denseDims: number[], strides: number[], offset: number, op: string,
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const elements = denseDims.reduce((a, b) => a * b, 1);
  // Runs of the innermost dim contiguous on both sides, each starting on a quad: copied as vec4f quads (a CPU driver
  // moves a quad for the cost of a word; a copy is the same bits).
  const quads = denseDims[3] % 4 === 0 && strides[3] === 1 && offset % 4 === 0 && strides.slice(0, 3).every((st) => st % 4 === 0);
  const [dims, steps, start] = quads ? [[...denseDims.slice(0, 3), denseDims[3] / 4], [...strides.slice(0, 3).map((st) => st / 4), 1], offset / 4] : [denseDims, strides, offset];
  const n = quads ? elements / 4 : elements;
  const perThread = elementsPerThread(n, shape);
  return {
    kernel: quads ? stridedCopyQuadsKernel : stridedCopyKernel, op, constants: { GATHER: direction === 'gather' ? 1 : 0, WG: shape.threads },
    params: { n, perThread, d1: dims[1], d2: dims[2], d3: dims[3], s0: steps[0], s1: steps[1], s2: steps[2], s3: steps[3], offset: start },
    workgroups: grid1d(Math.ceil(n / perThread), shape.threads, limits),
    cost: { flops: 0, bytesRead: 4 * elements, bytesWritten: 4 * elements },
  };
}
