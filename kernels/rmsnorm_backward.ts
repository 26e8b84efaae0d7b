// RMSNorm backward: dx per row and per-block partial sums of dweight, in one pass.
import { grid1d, wgsl, rowGroup, type Kernel, type KernelCall, type DeviceLimits, type RowReductionShape } from './spec.ts';
import { MAX_ROWS_PER_BLOCK, normRowBlocks } from './layernorm_backward.ts';

export const rmsNormBackwardKernel: Kernel = {
  name: 'rmsNormBackward',
  source: wgsl(import.meta.url, 'rmsnorm_backward.wgsl', { includes: ['workgroup_sum.wgsl'] }),
  inputs: ['x', 'weight', 'dy', 'rstd'],
  outputs: ['dx', 'partialWeight'],
  params: [['rows', 'u32'], ['cols', 'u32'], ['rowsPerBlock', 'u32']],
  constants: ['WG', 'ROWS', 'MAX_ROWS_PER_BLOCK'],
};

/** x and dy are rows x cols; writes dx and partialWeight [normRowBlocks(rows).blocks, cols]. */
export function rmsNormBackwardCall(limits: DeviceLimits, shape: RowReductionShape, rows: number, cols: number): KernelCall {
  const n = rows * cols;
  const { rowsPerBlock, blocks } = normRowBlocks(rows);
  const group = rowGroup(limits, shape, cols, 4, 4 * MAX_ROWS_PER_BLOCK, rowsPerBlock);
  // Per element: the row sum (3), then xhat, dx and the partial sum (7). x and dy are read once from
  // memory (the second pass over a block hits the cache), weight once for all rows.
  return {
    kernel: rmsNormBackwardKernel,
    constants: { WG: group.threads, ROWS: group.rows, MAX_ROWS_PER_BLOCK },
    params: { rows, cols, rowsPerBlock },
    workgroups: grid1d(blocks, 1, limits),
    cost: { flops: 10 * n, bytesRead: 8 * n + 4 * cols + 4 * rows, bytesWritten: 4 * n + 4 * blocks * cols },
  };
}
