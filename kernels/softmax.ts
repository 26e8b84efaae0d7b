// Softmax along the last dim and its backward: one workgroup per row, looping over rows of any length.
import { grid1d, loadWgsl, type Kernel, type KernelCall, nextPowerOfTwo, reductionWorkgroupSize, type DeviceLimits } from './spec.ts';

export const softmaxKernel: Kernel = {
  name: 'softmax', source: loadWgsl(import.meta.url, 'softmax.wgsl'),
  inputs: ['x'], outputs: ['y'], params: [['rows', 'u32'], ['cols', 'u32']], constants: ['WG'],
};

export const softmaxBackwardKernel: Kernel = {
  name: 'softmaxBackward', source: loadWgsl(import.meta.url, 'softmax_backward.wgsl'),
  inputs: ['y', 'dy'], outputs: ['dx'], params: [['rows', 'u32'], ['cols', 'u32']], constants: ['WG'],
};

/**
 * Threads per row: the power of two covering the row, at most 256 (WebGPU's guaranteed workgroup size, whose
 * two f32 reduction arrays take 2 KiB of the guaranteed 16 KiB of workgroup memory), so short rows leave no
 * idle threads behind.
 */
export function softmaxWorkgroupSize(limits: DeviceLimits, cols: number): number {
  return reductionWorkgroupSize(limits, 8, 0, Math.min(256, nextPowerOfTwo(cols)));
}

function rowCall(limits: DeviceLimits, kernel: Kernel, op: string, rows: number, cols: number, cost: KernelCall['cost']): KernelCall {
  return {
    kernel, op, constants: { WG: softmaxWorkgroupSize(limits, cols) }, params: { rows, cols },
    workgroups: grid1d(rows, 1, limits), cost,
  };
}

/** y = softmax(x) over rows × cols. */
export function softmaxCall(limits: DeviceLimits, rows: number, cols: number): KernelCall {
  const n = rows * cols;
  // Per element: compare, subtract, exp and add while reducing; subtract, exp and multiply while writing.
  // x is read twice: once to reduce, once to write.
  return rowCall(limits, softmaxKernel, 'softmax', rows, cols, { flops: 7 * n, bytesRead: 8 * n, bytesWritten: 4 * n });
}

/** dx = y · (dy - Σ dy·y) over rows × cols. */
export function softmaxBackwardCall(limits: DeviceLimits, rows: number, cols: number): KernelCall {
  const n = rows * cols;
  // Per element: multiply-add for the dot, subtract and multiply for dx; y and dy are read twice.
  return rowCall(limits, softmaxBackwardKernel, 'softmaxBackward', rows, cols, { flops: 4 * n, bytesRead: 16 * n, bytesWritten: 4 * n });
}
