// LayerNorm backward: dx per row and per-block partial sums of dweight and dbias, in one pass.
import { ceilDiv, grid1d, wgsl, rowGroup, type Kernel, type KernelCall, type DeviceLimits, type RowReductionShape } from './spec.ts';

export const layerNormBackwardKernel: Kernel = {
  name: 'layerNormBackward',
  source: wgsl(import.meta.url, 'layernorm_backward.wgsl', { includes: ['workgroup_sum.wgsl'] }),
  inputs: ['x', 'weight', 'dy', 'mean', 'rstd'],
  outputs: ['dx', 'partialWeight', 'partialBias'],
  params: [['rows', 'u32'], ['cols', 'u32'], ['rowsPerBlock', 'u32']],
  constants: ['WG', 'ROWS', 'MAX_ROWS_PER_BLOCK'],
};

// At least 16 rows per block keeps the partial sums ([blocks, cols], written here and read by column_sum)
// under a twelfth of the row traffic; past 256 blocks, blocks grow rather than their number, up to
// MAX_ROWS_PER_BLOCK, which also sizes the kernels' per-row statistics in workgroup memory.
const MIN_ROWS_PER_BLOCK = 16;
const TARGET_BLOCKS = 256;
export const MAX_ROWS_PER_BLOCK = 64;

/**
 * How the norm backward kernels split rows into blocks, one workgroup each, in a fixed way for a
 * given row count: each block writes one row of partial weight-gradient sums.
 */
export function normRowBlocks(rows: number): { rowsPerBlock: number; blocks: number } {
  const rowsPerBlock = Math.max(1, Math.min(rows, MAX_ROWS_PER_BLOCK, Math.max(MIN_ROWS_PER_BLOCK, ceilDiv(rows, TARGET_BLOCKS))));
  return { rowsPerBlock, blocks: ceilDiv(rows, rowsPerBlock) };
}

/** x and dy are rows x cols; writes dx and partialWeight, partialBias [normRowBlocks(rows).blocks, cols]. */
export function layerNormBackwardCall(limits: DeviceLimits, shape: RowReductionShape, rows: number, cols: number): KernelCall {
  const n = rows * cols;
  const { rowsPerBlock, blocks } = normRowBlocks(rows);
  const group = rowGroup(limits, shape, cols, 8, 8 * MAX_ROWS_PER_BLOCK, rowsPerBlock);
  // Per element: the row sums (5), then xhat, dx and the two partial sums (10). x and dy are read once
  // from memory (the second pass over a block hits the cache), weight once for all rows.
  return {
    kernel: layerNormBackwardKernel,
    constants: { WG: group.threads, ROWS: group.rows, MAX_ROWS_PER_BLOCK },
    params: { rows, cols, rowsPerBlock },
    workgroups: grid1d(blocks, 1, limits),
    cost: { flops: 15 * n, bytesRead: 8 * n + 4 * cols + 8 * rows, bytesWritten: 4 * n + 8 * blocks * cols },
  };
}
