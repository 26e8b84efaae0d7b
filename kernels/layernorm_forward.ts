// LayerNorm forward over the last dim: a row per rowGroup's threads, rows side by side in a workgroup; writes y and the row statistics the backward reads,
// and in the pair variant a second norm y2 of the same x (its own weight and bias) from the same statistics.
import { ceilDiv, grid1d, wgsl, type Kernel, type KernelCall, rowGroup, type DeviceLimits, type RowReductionShape } from './spec.ts';

function layerNormVariant(pair: boolean): Kernel {
  return {
    name: 'layerNormForward',
    source: wgsl(import.meta.url, 'layernorm_forward.wgsl', { includes: ['workgroup_sum.wgsl', pair ? 'layernorm_second_output.wgsl' : 'layernorm_no_second_output.wgsl'] }),
    inputs: ['x', 'weight', 'bias', 'weight2', 'bias2'],
    outputs: ['y', 'y2', 'mean', 'rstd'],
    params: [['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']],
    constants: ['WG', 'ROWS'],
    absent: pair ? [] : ['weight2', 'bias2', 'y2'],
  };
}

export const layerNormForwardKernel = layerNormVariant(false);
export const layerNormPairForwardKernel = layerNormVariant(true);

/** x is rows x cols; weight and bias (and for the pair weight2 and bias2) have cols elements. */
export function layerNormForwardCall(limits: DeviceLimits, shape: RowReductionShape, rows: number, cols: number, eps: number, pair = false): KernelCall {
  const n = rows * cols;
  const outputs = pair ? 2 : 1;
  // Per element: the shifted sum (2), the squared deviation (4), each output (5). x is read once from
  // memory (the later passes over a row hit the cache), weights and biases once for all rows.
  const group = rowGroup(limits, shape, cols, 4, 0, rows);
  return {
    kernel: pair ? layerNormPairForwardKernel : layerNormForwardKernel,
    constants: { WG: group.threads, ROWS: group.rows },
    params: { rows, cols, eps },
    workgroups: grid1d(ceilDiv(rows, group.rows), 1, limits),
    cost: { flops: (6 + 5 * outputs) * n, bytesRead: 4 * n + 8 * outputs * cols, bytesWritten: 4 * outputs * n + 8 * rows },
  };
}
