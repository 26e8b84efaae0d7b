// Attention backward, dQ for SIMD CPUs (attention_backward_dq_rows.wgsl): attention_backward_dq.wgsl's dQ, with the
// same mask, padding and GQA, on one subgroup of 8 lanes per 16 query rows (attention_forward_rows.wgsl's manner); and
// which of the two dQ kernels a device class runs (kernels/attention_tiles.json: a class's rows lists "dq").
// Why lavapipe runs it: 3.0-4.8x the tiled dQ (4 × 4 threads, 16 × 16 tiles) at B8 H4 T64, B1 H4 T256 and T512 D64,
// causal and window 64 (bench/attention_tiles.ts, alternated in one run, 2026-12-02); 16 rows beat 8 by up to 1.4x
// at T512, 0.95x at T64.
import type { MatmulDeviceClass, SubgroupDevice } from './matmul.ts';
import { ATTENTION_INCLUDES, ATTENTION_PARAMS, checkStorageBindings, keyRangeParts, maskParams, tileWork, type AttentionDims, type AttentionMask } from './attention_forward.ts';
import { attentionRowsUnfit, ROWS_TILES, rowsChoice, type RowsChoice } from './attention_forward_rows.ts';
import { attentionBackwardDqCall, dqTiles } from './attention_backward_dq.ts';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

function dqRowsKernel(hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'dout', 'lse', 'delta', 'keyRange'];
  const keyRange = keyRangeParts(inputs, hasKeyRange);
  return {
    name: 'attentionBackwardDqRows',
    source: wgsl(import.meta.url, 'attention_backward_dq_rows.wgsl', {
      directives: ['enable subgroups;'],
      includes: [...ATTENTION_INCLUDES, 'attention_rows.wgsl', ...keyRange.includes],
      placeholders: keyRange.placeholders,
    }),
    absent: keyRange.absent,
    inputs,
    outputs: ['dq'],
    params: ATTENTION_PARAMS,
    constants: ['D', 'SLOTS'],
  };
}

export const attentionBackwardDqRowsKernel = dqRowsKernel(false);
export const attentionBackwardDqRowsKeyRangeKernel = dqRowsKernel(true);

/** The rows dQ; throws where attentionRowsUnfit says why not. */
export function attentionBackwardDqRowsCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const grid = [ceilDiv(T, ROWS_TILES.BR), H, B] as const;
  const unfit = attentionRowsUnfit(sub, D)
    ?? (grid.some((n) => n > limits.maxComputeWorkgroupsPerDimension) ? `grid ${grid} exceeds maxComputeWorkgroupsPerDimension` : null);
  if (unfit) throw new KernelError(`attention backward dQ rows for ${JSON.stringify(dims)}: ${unfit}`);
  const kernel = mask.hasKeyRange ? attentionBackwardDqRowsKeyRangeKernel : attentionBackwardDqRowsKernel;
  checkStorageBindings(limits, kernel);
  const scores = tileWork(T, S, ROWS_TILES.BR, ROWS_TILES.BC, mask);
  const values = tileWork(T, S, ROWS_TILES.BR, ROWS_TILES.BCV!, mask);
  return {
    kernel,
    op: 'attentionBackwardDq', // the ledger's dQ, whichever kernel
    constants: { D, SLOTS: ceilDiv(D, 32) },
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: grid,
    // S = Q Kᵀ and dP = dO Vᵀ, 2·D each per entry of the 16 × 32 tiles; dQ += dS K, 2·D per entry of the 16 × 4 tiles.
    // Q, dO, lse and delta are read once; K and V rows of the score tiles, K rows again for dQ.
    cost: {
      flops: 2 * D * B * H * (2 * scores.entries + values.entries),
      bytesRead: 8 * B * H * T * (D + 1) + 4 * B * H * D * (2 * scores.keysLoaded + values.keysLoaded),
      bytesWritten: 4 * B * H * T * D,
    },
  };
}

/** The dQ kernel of device class `device` at head dim D (its tiles decide the entries computed: the audit's plan). */
export function dqChoice(limits: DeviceLimits, sub: SubgroupDevice, D: number, device: MatmulDeviceClass = 'other'): RowsChoice {
  return rowsChoice(sub, D, device, 'dq', () => dqTiles(limits, D, device));
}

/** The dQ call of dqChoice: the rows kernel or attentionBackwardDqCall. */
export function chosenDqCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number, device: MatmulDeviceClass): KernelCall {
  return dqChoice(limits, sub, dims.D, device).kernel === 'rows'
    ? attentionBackwardDqRowsCall(limits, sub, dims, mask, scale)
    : attentionBackwardDqCall(limits, dims, mask, scale, device);
}
