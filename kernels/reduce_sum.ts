// Sum (times alpha) of a tensor down to a broadcast-compatible shape: a thread an output (elementwise_main.wgsl).
import { ELEMENTWISE_SHAPES, elementwiseLaunch, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const reduceSumKernel: Kernel = {
  name: 'reduceSum',
  source: wgsl(import.meta.url, 'reduce_sum.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: ['x'],
  outputs: ['out'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['d0', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'], ['o1', 'u32'], ['o2', 'u32'], ['o3', 'u32'],
    ['r0', 'u32'], ['r1', 'u32'], ['r2', 'u32'], ['r3', 'u32'], ['alpha', 'f32']],
  constants: ['WG'],
};

/**
 * inDims and outDims padded to rank 4; outDims[k] is 1 or inDims[k]. `shape`: the device's elementwise shape over the
 * outputs (on a CPU driver 64 threads a workgroup: a bias gradient's 64 to 256 columns then spread over the cores).
 */
export function reduceSumCall(limits: DeviceLimits, inDims: number[], outDims: number[], alpha: number, op = 'reduceSum', shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = outDims.reduce((a, b) => a * b, 1);
  const nIn = inDims.reduce((a, b) => a * b, 1);
  const r = inDims.map((d, k) => (outDims[k] === 1 ? d : 1));
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: reduceSumKernel, op, constants,
    params: { n, perThread, d0: inDims[0], d1: inDims[1], d2: inDims[2], d3: inDims[3], o1: outDims[1], o2: outDims[2], o3: outDims[3],
      r0: r[0], r1: r[1], r2: r[2], r3: r[3], alpha },
    workgroups,
    cost: { flops: nIn, bytesRead: 4 * nIn, bytesWritten: 4 * n },
  };
}
