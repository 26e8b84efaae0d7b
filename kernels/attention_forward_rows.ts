// The attention forward for SIMD CPUs (attention_forward_rows.wgsl): attention_forward.wgsl's out and lse, with the
// same mask, padding, GQA and f32 or f16 storage, on one subgroup of 8 lanes per 16 query rows that loads quads and
// shares them by subgroupBroadcast (matmul_rows.wgsl's manner) instead of tiles in workgroup memory; and which of
// the two forwards a device class runs (kernels/attention_tiles.json: a class's rows lists "forward").
// Why lavapipe runs it: 4.4-5.4x the tiled forward (8 × 8 threads, 32 × 32 tiles) at B8 H4 T64, B1 H4 T256 and T512
// D64 causal, 5.0-6.4x at T256 and T512 window 64 (bench/attention_tiles.ts, alternated in one run, 2026-12-02).
import { bytesPerElement } from './dtype.ts';
import type { MatmulDeviceClass, SubgroupDevice } from './matmul.ts';
import {
  ATTENTION_INCLUDES, ATTENTION_PARAMS, ATTENTION_TILE_TABLE, attentionForwardCall, forwardTiles, keyRangeParts, maskParams, tileWork,
  type AttentionDims, type AttentionMask, type AttentionTileKernel, type AttentionTiles,
} from './attention_forward.ts';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

/**
 * A workgroup's scores are tiles of 16 query rows (two per lane) by 32 keys (4 per lane); its P V product skips the
 * blocks of 4 keys that no row of the tile sees (BCV), so it runs over 16 × 4 tiles (tileWork of each).
 */
export const ROWS_TILES: AttentionTiles = { BR: 16, BC: 32, BCV: 4 };
/** The largest head dim: each lane holds 2 output quads of dims per row (SLOTS in the kernel). */
export const ROWS_MAX_HEAD_DIM = 64;
const LANES = 8;

function rowsKernel(storage: 'f32' | 'f16', hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'keyRange'];
  const keyRange = keyRangeParts(inputs, hasKeyRange);
  return {
    name: storage === 'f32' ? 'attentionForwardRows' : 'attentionForwardRowsF16',
    source: wgsl(import.meta.url, 'attention_forward_rows.wgsl', {
      directives: ['enable subgroups;', ...(storage === 'f16' ? ['enable f16;'] : [])],
      includes: [...ATTENTION_INCLUDES, 'attention_rows.wgsl', ...keyRange.includes],
      placeholders: { STORAGE: storage, ...keyRange.placeholders },
    }),
    absent: keyRange.absent,
    inputs,
    outputs: ['out', 'lse'],
    params: ATTENTION_PARAMS,
    constants: ['D', 'SLOTS'],
  };
}

export const attentionForwardRowsKernel = rowsKernel('f32', false);
export const attentionForwardRowsKeyRangeKernel = rowsKernel('f32', true);
export const attentionForwardRowsF16Kernel = rowsKernel('f16', false);
export const attentionForwardRowsF16KeyRangeKernel = rowsKernel('f16', true);

/** Why the rows kernels (this forward, attention_backward_dq_rows, _dkdv_rows) cannot run head dim D on this device (null: they can). */
export function attentionRowsUnfit(sub: SubgroupDevice, D: number): string | null {
  return !sub.subgroups || sub.subgroupMinSize !== LANES || sub.subgroupMaxSize !== LANES ? `needs subgroups of exactly ${LANES} invocations`
    : D % 4 !== 0 || D > ROWS_MAX_HEAD_DIM ? `head dim ${D} is not a multiple of 4 up to ${ROWS_MAX_HEAD_DIM}`
    : null;
}

/** The rows forward; throws where attentionRowsUnfit says why not. storage: the dtype of q, k and v. */
export function attentionForwardRowsCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number, storage: 'f32' | 'f16' = 'f32'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const grid = [ceilDiv(T, ROWS_TILES.BR), H, B] as const;
  const unfit = attentionRowsUnfit(sub, D)
    ?? (grid.some((n) => n > limits.maxComputeWorkgroupsPerDimension) ? `grid ${grid} exceeds maxComputeWorkgroupsPerDimension` : null);
  if (unfit) throw new KernelError(`attention forward rows for ${JSON.stringify(dims)}: ${unfit}`);
  const scores = tileWork(T, S, ROWS_TILES.BR, ROWS_TILES.BC, mask);
  const values = tileWork(T, S, ROWS_TILES.BR, ROWS_TILES.BCV!, mask);
  const e = bytesPerElement(storage);
  return {
    kernel: storage === 'f32'
      ? (mask.hasKeyRange ? attentionForwardRowsKeyRangeKernel : attentionForwardRowsKernel)
      : (mask.hasKeyRange ? attentionForwardRowsF16KeyRangeKernel : attentionForwardRowsF16Kernel),
    op: storage === 'f32' ? 'attentionForward' : 'attentionForwardF16', // the ledger's forward, whichever kernel
    constants: { D, SLOTS: ceilDiv(D, 4 * LANES) },
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: grid,
    // Q Kᵀ: 2·D per entry of its 16 × 32 tiles, P V: 2·D per entry of its 16 × 4 tiles; each workgroup reads its
    // query rows once and the K and V rows of those tiles.
    cost: {
      flops: 2 * D * B * H * (scores.entries + values.entries),
      bytesRead: e * D * B * H * (T + scores.keysLoaded + values.keysLoaded),
      bytesWritten: 4 * B * H * T * (D + 1),
    },
  };
}

/** Which of a kernel's variants runs: the rows kernel where the device class's table lists it and it fits, else the tiled one. */
export interface RowsChoice { kernel: 'rows' | 'tiled'; tiles: AttentionTiles; /** Why not the rows kernel, where the table listed it. */ reason?: string }

/** The rows kernel's choice for `kernel` (kernels/attention_tiles.json's rows) at head dim D, else `tiled` (its tiles). */
export function rowsChoice(sub: SubgroupDevice, D: number, device: MatmulDeviceClass, kernel: AttentionTileKernel, tiled: () => AttentionTiles): RowsChoice {
  if (!ATTENTION_TILE_TABLE[device].rows?.includes(kernel)) return { kernel: 'tiled', tiles: tiled() };
  const unfit = attentionRowsUnfit(sub, D);
  return unfit ? { kernel: 'tiled', tiles: tiled(), reason: unfit } : { kernel: 'rows', tiles: ROWS_TILES };
}

/** The forward kernel of device class `device` at head dim D (its tiles decide the score entries computed: the audit's plan). */
export function forwardChoice(limits: DeviceLimits, sub: SubgroupDevice, D: number, device: MatmulDeviceClass = 'other'): RowsChoice {
  return rowsChoice(sub, D, device, 'forward', () => forwardTiles(limits, D, device));
}

/** The forward call of forwardChoice: the rows kernel or attentionForwardCall. */
export function chosenForwardCall(limits: DeviceLimits, sub: SubgroupDevice, dims: AttentionDims, mask: AttentionMask, scale: number, storage: 'f32' | 'f16', device: MatmulDeviceClass): KernelCall {
  return forwardChoice(limits, sub, dims.D, device).kernel === 'rows'
    ? attentionForwardRowsCall(limits, sub, dims, mask, scale, storage)
    : attentionForwardCall(limits, dims, mask, scale, storage, device);
}
