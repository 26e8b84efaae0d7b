// RMSNorm forward over the last dim: a row per rowGroup's threads, rows side by side in a workgroup; writes y and the row's rstd for the backward.
import { ceilDiv, grid1d, wgsl, rowGroup, type Kernel, type KernelCall, type DeviceLimits, type RowReductionShape } from './spec.ts';

export const rmsNormForwardKernel: Kernel = {
  name: 'rmsNormForward',
  source: wgsl(import.meta.url, 'rmsnorm_forward.wgsl', { includes: ['workgroup_sum.wgsl'] }),
  inputs: ['x', 'weight'],
  outputs: ['y', 'rstd'],
  params: [['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']],
  constants: ['WG', 'ROWS'],
};

/** x is rows x cols; weight has cols elements. */
export function rmsNormForwardCall(limits: DeviceLimits, shape: RowReductionShape, rows: number, cols: number, eps: number): KernelCall {
  const n = rows * cols;
  // Per element: the square and its sum (2), the output (2). x is read once from memory (the second
  // pass over a row hits the cache), weight once for all rows.
  const group = rowGroup(limits, shape, cols, 4, 0, rows);
  return {
    kernel: rmsNormForwardKernel,
    constants: { WG: group.threads, ROWS: group.rows },
    params: { rows, cols, eps },
    workgroups: grid1d(ceilDiv(rows, group.rows), 1, limits),
    cost: { flops: 4 * n, bytesRead: 4 * n + 4 * cols, bytesWritten: 4 * n + 4 * rows },
  };
}
