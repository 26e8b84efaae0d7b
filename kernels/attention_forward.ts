// FlashAttention-2 forward (out and row logsumexp), and what every attention kernel shares: the mask rule
// included in its WGSL, the storage type of q, k and v (f32 or f16), tile sizes picked from the device's limits,
// and the count of score entries that tile skipping leaves to compute (their analytic cost).
import { readFileSync } from 'node:fs';
import { bytesPerElement } from './dtype.ts';
import type { MatmulDeviceClass } from './matmul.ts';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall, type ParamType } from './spec.ts';

/** Sizes of one attention call: q [B, H, T, D], k and v [B, KVH, S, D]. */
export interface AttentionDims { B: number; H: number; KVH: number; T: number; S: number; D: number }

/**
 * The mask as the kernels see it: query row t has position t + positionOffset; window > 0 implies causal.
 * hasKeyRange picks the kernel variant that reads padding (a keyRange tensor) on the GPU, so the host-side costs
 * assume every key valid.
 */
export interface AttentionMask { causal: boolean; window: number; positionOffset: number; hasKeyRange: boolean }

/**
 * The optional keyRange input (padding) of an attention kernel whose inputs are `inputs`: the variant with it
 * includes attention_key_range.wgsl, which declares it at its index among the inputs; the variant without it
 * includes attention_no_key_range.wgsl (every key valid), declares no binding and lists it as absent.
 */
export function keyRangeParts(inputs: readonly string[], hasKeyRange: boolean): { includes: string[]; placeholders: Record<string, number>; absent: string[] } {
  if (!inputs.includes('keyRange')) throw new KernelError(`attention inputs ${inputs.join(', ')} have no keyRange`);
  return hasKeyRange
    ? { includes: ['attention_key_range.wgsl'], placeholders: { KEY_RANGE_BINDING: inputs.indexOf('keyRange') }, absent: [] }
    : { includes: ['attention_no_key_range.wgsl'], placeholders: {}, absent: ['keyRange'] };
}

/**
 * An attention kernel's WGSL and absent inputs, including the mask rule (attention_visibility.wgsl), the
 * forward's and backward's uniform (attention_params.wgsl; the decode and mask kernels, sharedParams false,
 * declare their own) and the keyRange variant (keyRangeParts). A kernel that reads q, k and v as `Storage` (its
 * `alias Storage = {{STORAGE}};`) is given their dtype, f32 or f16 (its loads convert to f32, so all arithmetic
 * stays f32); f16 adds `enable f16;`. `includes`: the kernel's own, after the shared ones.
 */
export function attentionSource(file: string, inputs: readonly string[], hasKeyRange: boolean, storage?: 'f32' | 'f16', sharedParams = true, includes: readonly string[] = []): Pick<Kernel, 'source' | 'absent'> {
  const keyRange = keyRangeParts(inputs, hasKeyRange);
  const source = wgsl(import.meta.url, file, {
    directives: storage === 'f16' ? ['enable f16;'] : [],
    includes: [...(sharedParams ? ATTENTION_INCLUDES : ['attention_visibility.wgsl']), ...includes, ...keyRange.includes],
    placeholders: { ...(storage ? { STORAGE: storage } : {}), ...keyRange.placeholders },
  });
  return { source, absent: keyRange.absent };
}

/** The mask fields every attention kernel's Params ends with, in this order. */
export const MASK_PARAMS: readonly (readonly [string, ParamType])[] = [['causal', 'u32'], ['window', 'u32'], ['positionOffset', 'u32']];

/** The uniform of the forward and backward kernels, in attention_params.wgsl's order. */
export const ATTENTION_PARAMS: readonly (readonly [string, ParamType])[] = [['T', 'u32'], ['S', 'u32'], ['H', 'u32'], ['KVH', 'u32'], ['scale', 'f32'], ...MASK_PARAMS];

/** What every forward and backward kernel includes first: its uniform and constants, and the mask rule. */
export const ATTENTION_INCLUDES: readonly string[] = ['attention_params.wgsl', 'attention_visibility.wgsl'];

export function maskParams(mask: AttentionMask): Record<string, number> {
  return { causal: mask.causal || mask.window > 0 ? 1 : 0, window: mask.window, positionOffset: mask.positionOffset };
}

/** Threads per side of a workgroup (GRID in the kernels); each holds blocks of up to MAX_BLOCK = 4 rows and columns. */
export const GRID = 8;

/** The largest head dim (Pythia-1b's): the forward holds at most MAX_DIMS = 32 dims of a V row per thread, GRID apart. */
export const MAX_HEAD_DIM = 32 * GRID;

/** Accumulators per thread (MAX_ACC in the kernels): the held rows (or keys) per thread × ceil(D / GRID) dims. */
const MAX_ACCUMULATORS = 64;

/**
 * BR query rows × BC keys, on GRID × GRID threads (the GRID constant when absent). The rows kernels skip blocks of a
 * tile in their last products: BCV keys per block (the forward's P V, dQ's dS K) or BRV rows (dV and dK); BC or BR
 * when absent.
 */
export interface AttentionTiles { BR: number; BC: number; GRID?: number; BCV?: number; BRV?: number }

/** The attention kernels whose tiles kernels/attention_tiles.json may choose per device class. */
export type AttentionTileKernel = 'forward' | 'dkdv' | 'dq';
/**
 * Per device class (matmul's), the tiles of some kernels; a kernel without an entry, or whose entry does not fit, takes
 * pickTiles' choice. `rows`: the kernels that run their rows variant where it fits (attention_forward_rows.ts,
 * attention_backward_dq_rows.ts, attention_backward_dkdv_rows.ts: forwardChoice, dqChoice, dkdvChoice), their tiles
 * then serving the fallback.
 */
export type AttentionTileTable = Record<MatmulDeviceClass, Partial<Record<AttentionTileKernel, AttentionTiles>> & { rows?: readonly AttentionTileKernel[] }>;
/** The measured choices (bench/RESULTS.md, "Attention tiles on lavapipe"). */
export const ATTENTION_TILE_TABLE: AttentionTileTable = JSON.parse(readFileSync(new URL('attention_tiles.json', import.meta.url), 'utf8'));

// Largest first: BR query rows × BC keys, multiples of GRID up to GRID · MAX_BLOCK = 32; in each pair of equal
// area, the first holds more query rows, the second more keys.
const TILE_CANDIDATES: readonly AttentionTiles[] = [
  { BR: 32, BC: 32 }, { BR: 32, BC: 16 }, { BR: 16, BC: 32 }, { BR: 16, BC: 16 }, { BR: 16, BC: 8 }, { BR: 8, BC: 16 }, { BR: 8, BC: 8 },
];

/**
 * The largest tile whose workgroup memory, `floats(tile)` f32 values, fits maxComputeWorkgroupStorageSize and
 * whose accumulators fit MAX_ACCUMULATORS registers per thread (which binds only above D = 128: 16 held rows
 * at most). Between tiles of equal area, a kernel prefers more of what it holds while streaming the other:
 * query rows (forward, dQ) or keys (dK and dV, about 20% faster at D = 64 on lavapipe). A table entry
 * (ATTENTION_TILE_TABLE, by device class) comes first where it fits the device and D.
 */
export function pickTiles(limits: DeviceLimits, what: string, holds: 'rows' | 'keys', D: number, floats: (t: AttentionTiles) => number, chosen?: AttentionTiles): AttentionTiles {
  const held = (t: AttentionTiles) => (holds === 'rows' ? t.BR : t.BC);
  if (chosen) {
    const g = chosen.GRID ?? GRID;
    const blocks = [chosen.BR / g, chosen.BC / g];
    if (g * g <= limits.maxComputeInvocationsPerWorkgroup && blocks.every((n) => Number.isInteger(n) && n >= 1 && n <= 4)
      && ceilDiv(D, g) <= 32 && 4 * floats(chosen) <= limits.maxComputeWorkgroupStorageSize && (held(chosen) / g) * ceilDiv(D, g) <= MAX_ACCUMULATORS) return chosen;
  }
  if (GRID * GRID > limits.maxComputeInvocationsPerWorkgroup) throw new KernelError(`${what}: ${GRID * GRID} invocations exceed maxComputeInvocationsPerWorkgroup`);
  const ordered = [...TILE_CANDIDATES].sort((a, b) => b.BR * b.BC - a.BR * a.BC || held(b) - held(a));
  const tiles = ordered.find((t) => 4 * floats(t) <= limits.maxComputeWorkgroupStorageSize && (held(t) / GRID) * ceilDiv(D, GRID) <= MAX_ACCUMULATORS);
  if (!tiles) throw new KernelError(`${what}: no attention tile at head dim ${D} fits maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize} bytes`);
  return tiles;
}

/**
 * Head dims per chunk of the tiles a backward kernel streams (DC in the kernels): all of them up to D = 128
 * (one chunk: the tiles tuned there), 64 beyond, so that at D = 256 tiles of 8 held and 16 streamed rows (or
 * keys) fit 32 KiB, and of 16 and 16 fit 48 KiB.
 */
export function streamedChunkDims(D: number): number { return D <= 128 ? D : 64; }

/** Head dims of a streamed tile that a backward kernel loads twice: every chunk but the last, which stays resident. */
export function reloadedDims(D: number): number {
  const DC = streamedChunkDims(D);
  return (ceilDiv(D, DC) - 1) * DC;
}

/** The override constants of a tiled attention kernel (TILE_CONSTANTS), all set by the host. */
export function tileConstants(D: number, { BR, BC, GRID: g = GRID }: AttentionTiles): Record<string, number> {
  return { D, BR, BC, GRID: g, ROWS: BR / g, COLS: BC / g, DIMS: ceilDiv(D, g) };
}

export const TILE_CONSTANTS = ['D', 'BR', 'BC', 'GRID', 'ROWS', 'COLS', 'DIMS'] as const;

/** Throws unless the device binds as many storage buffers per shader as the kernel declares (WebGPU's default is 8). */
export function checkStorageBindings(limits: DeviceLimits, kernel: Kernel): void {
  const n = kernel.inputs.length + kernel.outputs.length - (kernel.absent ?? []).length;
  const limit = limits.maxStorageBuffersPerShaderStage;
  if (n > limit) throw new KernelError(`${kernel.name}: ${n} storage buffers exceed this device's maxStorageBuffersPerShaderStage (${limit})`);
}

/** The keys [lo, hi) that some query with a position in [pos0, pos1] sees (host twin of visibleKeySpan). */
export function visibleKeySpan(pos0: number, pos1: number, S: number, mask: AttentionMask): [number, number] {
  let lo = 0, hi = S;
  if (mask.causal || mask.window > 0) {
    hi = Math.min(hi, pos1 + 1);
    if (mask.window > 0) lo = Math.max(lo, pos0 + 1 - mask.window);
  }
  return [lo, Math.max(lo, hi)];
}

/** What a kernel tiled BR × BC computes for one (batch row, head); see tileWork. */
export interface TileWork { entries: number; keysLoaded: number; rowsLoaded: number }

/**
 * The work of a kernel tiled BR query rows × BC keys, for one (batch row, head): it computes every tile
 * pair holding a visible entry (masked entries inside it included) and skips tiles wholly above the
 * diagonal or outside the window. entries: score entries computed (rows × keys present in those tiles);
 * keysLoaded: keys a query-tile-major kernel loads, summed over its query tiles; rowsLoaded: query rows a
 * key-tile-major kernel loads, summed over its key tiles.
 */
export function tileWork(T: number, S: number, BR: number, BC: number, mask: AttentionMask): TileWork {
  let entries = 0, keysLoaded = 0, rowsLoaded = 0;
  for (let t0 = 0; t0 < T; t0 += BR) {
    const rows = Math.min(BR, T - t0);
    const [lo, hi] = visibleKeySpan(t0 + mask.positionOffset, t0 + rows - 1 + mask.positionOffset, S, mask);
    if (hi <= lo) continue;
    const keys = Math.min(ceilDiv(hi, BC) * BC, S) - Math.floor(lo / BC) * BC;
    entries += rows * keys;
    keysLoaded += keys;
  }
  for (let j0 = 0; j0 < S; j0 += BC) {
    const [lo, hi] = seeingRowSpan(j0, Math.min(j0 + BC, S) - 1, T, mask);
    if (hi > lo) rowsLoaded += Math.min(ceilDiv(hi, BR) * BR, T) - Math.floor(lo / BR) * BR;
  }
  return { entries, keysLoaded, rowsLoaded };
}

/** The query rows [lo, hi) of T that see some key in [j0, j1] (host twin of seeingRowSpan). */
export function seeingRowSpan(j0: number, j1: number, T: number, mask: AttentionMask): [number, number] {
  if (!mask.causal && mask.window === 0) return [0, T];
  const lo = Math.min(Math.max(j0 - mask.positionOffset, 0), T);
  const hi = mask.window > 0 ? Math.min(T, Math.max(0, j1 + mask.window - mask.positionOffset)) : T;
  return [lo, Math.max(lo, hi)];
}

/**
 * The tiled forward's tiles; device: the class whose entry of kernels/attention_tiles.json applies (matmul's device
 * classes; its `rows` may name the rows forward instead, attention_forward_rows.ts forwardChoice).
 */
export function forwardTiles(limits: DeviceLimits, D: number, device: MatmulDeviceClass = 'other'): AttentionTiles {
  // qTile + kvTile + pTile + three row statistics.
  return pickTiles(limits, 'attentionForward', 'rows', D, ({ BR, BC }) => BR * D + BC * D + BR * BC + 3 * BR, ATTENTION_TILE_TABLE[device].forward);
}

function forwardKernel(storage: 'f32' | 'f16', hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'keyRange'];
  return {
    name: storage === 'f32' ? 'attentionForward' : 'attentionForwardF16',
    ...attentionSource('attention_forward.wgsl', inputs, hasKeyRange, storage),
    inputs,
    outputs: ['out', 'lse'],
    params: ATTENTION_PARAMS,
    constants: TILE_CONSTANTS,
  };
}

export const attentionForwardKernel = forwardKernel('f32', false);
export const attentionForwardKeyRangeKernel = forwardKernel('f32', true);
export const attentionForwardF16Kernel = forwardKernel('f16', false);
export const attentionForwardF16KeyRangeKernel = forwardKernel('f16', true);

/** storage: the dtype of q, k and v. */
export function attentionForwardCall(limits: DeviceLimits, dims: AttentionDims, mask: AttentionMask, scale: number, storage: 'f32' | 'f16' = 'f32', device: MatmulDeviceClass = 'other'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const tiles = forwardTiles(limits, D, device);
  const work = tileWork(T, S, tiles.BR, tiles.BC, mask);
  const e = bytesPerElement(storage);
  return {
    kernel: storage === 'f32'
      ? (mask.hasKeyRange ? attentionForwardKeyRangeKernel : attentionForwardKernel)
      : (mask.hasKeyRange ? attentionForwardF16KeyRangeKernel : attentionForwardF16Kernel),
    constants: tileConstants(D, tiles),
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: [ceilDiv(T, tiles.BR), H, B],
    // Q Kᵀ and P V: 2·D each per computed entry; each query tile reads K and V rows of its computed key tiles.
    cost: {
      flops: 4 * D * B * H * work.entries,
      bytesRead: e * D * B * H * (T + 2 * work.keysLoaded),
      bytesWritten: 4 * B * H * T * (D + 1),
    },
  };
}
