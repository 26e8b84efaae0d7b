// RMSNorm forward over the last dim: one workgroup per row; writes y and the row's rstd for the backward.
import { grid1d, wgsl, rowWorkgroupSize, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const rmsNormForwardKernel: Kernel = {
  name: 'rmsNormForward',
  source: wgsl(import.meta.url, 'rmsnorm_forward.wgsl', { includes: ['workgroup_sum.wgsl'] }),
  inputs: ['x', 'weight'],
  outputs: ['y', 'rstd'],
  params: [['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']],
  constants: ['WG'],
};

/** x is rows x cols; weight has cols elements. */
export function rmsNormForwardCall(limits: DeviceLimits, rows: number, cols: number, eps: number): KernelCall {
  const n = rows * cols;
  // Per element: the square and its sum (2), the output (2). x is read once from memory (the second
  // pass over a row hits the cache), weight once for all rows.
  return {
    kernel: rmsNormForwardKernel,
    constants: { WG: rowWorkgroupSize(limits, cols, 4) },
    params: { rows, cols, eps },
    workgroups: grid1d(rows, 1, limits),
    cost: { flops: 4 * n, bytesRead: 4 * n + 4 * cols, bytesWritten: 4 * n + 4 * rows },
  };
}
