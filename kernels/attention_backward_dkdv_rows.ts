// Attention backward, dK and dV for SIMD CPUs (attention_backward_dkdv_rows.wgsl): attention_backward_dkdv.wgsl's,
// with the same mask, padding and GQA, on one subgroup of 8 lanes per 16 keys (attention_forward_rows.wgsl's manner,
// queries and keys exchanged); and which of the two a device class runs (kernels/attention_tiles.json: rows "dkdv").
// Why lavapipe runs it: 2.6-3.8x the tiled dK/dV (4 × 4 threads, 16 × 16 tiles) at B8 H4 T64, B1 H4 T256 and T512
// D64, causal and window 64 (bench/attention_tiles.ts, alternated in one run, 2026-12-02); 16 keys beat 8 by 1.1-1.5x.
import type { MatmulDeviceClass, SubgroupDevice } from './matmul.ts';
import { ATTENTION_INCLUDES, ATTENTION_PARAMS, checkStorageBindings, keyRangeParts, maskParams, tileWork, type AttentionDims, type AttentionMask, type AttentionTiles } from './attention_forward.ts';
import { attentionRowsUnfit, rowsChoice, type RowsChoice } from './attention_forward_rows.ts';
import { attentionBackwardDkDvCall, dkdvTiles } from './attention_backward_dkdv.ts';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

/**
 * A workgroup's Sᵀ and dPᵀ are tiles of 16 keys (two per lane) by 32 query rows (4 per lane); its dV and dK skip the
 * blocks of 4 rows that see none of its keys (BRV), so they run over 4 × 16 tiles (tileWork of each).
 */
export const DKDV_ROWS_TILES: AttentionTiles = { BR: 32, BC: 16, BRV: 4 };

function dkdvRowsKernel(hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'dout', 'lse', 'delta', 'keyRange'];
  const keyRange = keyRangeParts(inputs, hasKeyRange);
  return {
    name: 'attentionBackwardDkDvRows',
    source: wgsl(import.meta.url, 'attention_backward_dkdv_rows.wgsl', {
      directives: ['enable subgroups;'],
      includes: [...ATTENTION_INCLUDES, 'attention_rows.wgsl', ...keyRange.includes],
      placeholders: keyRange.placeholders,
    }),
    absent: keyRange.absent,
    inputs,
    outputs: ['dk', 'dv'],
    params: ATTENTION_PARAMS,
    constants: ['D', 'SLOTS'],
  };
}

export const attentionBackwardDkDvRowsKernel = dkdvRowsKernel(false);
export const attentionBackwardDkDvRowsKeyRangeKernel = dkdvRowsKernel(true);

/** The rows dK/dV; throws where attentionRowsUnfit says why not. */
export function attentionBackwardDkDvRowsCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const { BR, BC, BRV } = DKDV_ROWS_TILES;
  const grid = [ceilDiv(S, BC), KVH, B] as const;
  const unfit = attentionRowsUnfit(sub, D)
    ?? (grid.some((n) => n > limits.maxComputeWorkgroupsPerDimension) ? `grid ${grid} exceeds maxComputeWorkgroupsPerDimension` : null);
  if (unfit) throw new KernelError(`attention backward dK/dV rows for ${JSON.stringify(dims)}: ${unfit}`);
  const kernel = mask.hasKeyRange ? attentionBackwardDkDvRowsKeyRangeKernel : attentionBackwardDkDvRowsKernel;
  checkStorageBindings(limits, kernel);
  const scores = tileWork(T, S, BR, BC, mask);
  const grads = tileWork(T, S, BRV!, BC, mask);
  return {
    kernel,
    op: 'attentionBackwardDkDv', // the ledger's dK/dV, whichever kernel
    constants: { D, SLOTS: ceilDiv(D, 32) },
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: grid,
    // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, 2·D each per entry of the 32 × 16 tiles; dV += Pᵀ dO and dK += dSᵀ Q, 2·D each per
    // entry of the 4 × 16 tiles. K and V are read once; each key tile reads the Q, dO, lse and delta rows of its
    // score tiles, for every query head, and the Q and dO rows of its gradient tiles again.
    cost: {
      flops: 4 * D * B * H * (scores.entries + grads.entries),
      bytesRead: 8 * B * KVH * S * D + 8 * B * H * (scores.rowsLoaded * (D + 1) + grads.rowsLoaded * D),
      bytesWritten: 8 * B * KVH * S * D,
    },
  };
}

/** The dK/dV kernel of device class `device` at head dim D (its tiles decide the entries computed: the audit's plan). */
export function dkdvChoice(limits: DeviceLimits, sub: SubgroupDevice, D: number, device: MatmulDeviceClass = 'other'): RowsChoice {
  const choice = rowsChoice(sub, D, device, 'dkdv', () => dkdvTiles(limits, D, device));
  return choice.kernel === 'rows' ? { ...choice, tiles: DKDV_ROWS_TILES } : choice;
}

/** The dK/dV call of dkdvChoice: the rows kernel or attentionBackwardDkDvCall. */
export function chosenDkDvCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number, device: MatmulDeviceClass): KernelCall {
  return dkdvChoice(limits, sub, dims.D, device).kernel === 'rows'
    ? attentionBackwardDkDvRowsCall(limits, sub, dims, mask, scale)
    : attentionBackwardDkDvCall(limits, dims, mask, scale, device);
}
