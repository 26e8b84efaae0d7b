// LayerNorm forward over the last dim: one workgroup per row; writes y and the row statistics the backward reads.
import { grid1d, loadWgsl, type Kernel, type KernelCall, nextPowerOfTwo, reductionWorkgroupSize } from '../engine/kernel.ts';

export const layerNormForwardKernel: Kernel = {
  name: 'layerNormForward',
  source: loadWgsl(import.meta.url, 'workgroup_sum.wgsl') + loadWgsl(import.meta.url, 'layernorm_forward.wgsl'),
  inputs: ['x', 'weight', 'bias'],
  outputs: ['y', 'mean', 'rstd'],
  params: [['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']],
  constants: ['WG'],
};

// About 32 elements per thread: a warp per row of 768 as in llm.c's layernorm kernels. Each barrier of the
// reduction costs every 8 invocations a fiber switch on lavapipe, where 256 threads per row of 768 ran 3-8x slower.
const ELEMENTS_PER_THREAD = 32;

/** Threads per row: about ELEMENTS_PER_THREAD elements each (barriers are dear on CPU drivers), within the limits. */
export function normWorkgroupSize(cols: number, bytesPerThread: number, fixedBytes = 0): number {
  return reductionWorkgroupSize(bytesPerThread, fixedBytes, Math.min(256, nextPowerOfTwo(cols / ELEMENTS_PER_THREAD)));
}

/** x is rows x cols; weight and bias have cols elements. */
export function layerNormForwardCall(rows: number, cols: number, eps: number): KernelCall {
  const n = rows * cols;
  // Per element: the shifted sum (2), the squared deviation (4), the output (5). x is read once from
  // memory (the later passes over a row hit the cache), weight and bias once for all rows.
  return {
    kernel: layerNormForwardKernel,
    constants: { WG: normWorkgroupSize(cols, 4) },
    params: { rows, cols, eps },
    workgroups: grid1d(rows, 1),
    cost: { flops: 11 * n, bytesRead: 4 * n + 8 * cols, bytesWritten: 4 * n + 8 * rows },
  };
}
