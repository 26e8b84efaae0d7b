// Batched C = op(A) · op(B) (+ bias) (+ residual): tiled through workgroup memory and register-blocked (matmul.wgsl), or for SIMD
// CPUs in quads shared by subgroupBroadcast (matmul_rows.wgsl); kernels/matmul_tiles.json says which where.
import type { Activation } from './activation.ts';
import { FORMAT_CONSTANT, type FloatDType } from './dtype.ts';
import { epilogueKey, epilogueOf, epilogueParts, MATMUL_INPUTS, matmulCost, type MatmulShape } from './matmul_shape.ts';
import { readFileSync } from 'node:fs';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
export { epilogueKey, epilogueOf, epilogueParts, MATMUL_INPUTS, matmulCost, type MatmulShape } from './matmul_shape.ts';
import { MATMUL_VEC4_VARIANTS, matmulVec4Call, matmulVec4Unfit, type MatmulVec4Name } from './matmul_vec4.ts';

const tiledKernels = new Map<string, Kernel>();
/** The tiled kernel with or without a bias and a residual (the variant without one neither declares nor binds it). */
export function matmulTiledKernel(hasBias: boolean, hasResidual: boolean, activation?: Activation): Kernel {
  const key = epilogueKey(hasBias, hasResidual, activation);
  let k = tiledKernels.get(key);
  if (!k) {
    const { includes, absent, constants } = epilogueParts(hasBias, hasResidual, activation);
    tiledKernels.set(key, (k = {
      name: 'matmul',
      source: wgsl(import.meta.url, 'matmul.wgsl', { includes: ['float_storage.wgsl', ...includes] }),
      inputs: MATMUL_INPUTS,
      outputs: ['c'],
      params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
      constants: ['TRANS_A', 'TRANS_B', 'A_FORMAT', 'B_FORMAT', 'TILE_M', 'TILE_N', 'TILE_K', 'THREAD_M', 'THREAD_N', ...constants],
      absent,
    }));
  }
  return k;
}

export const matmulKernel = matmulTiledKernel(false, false);
export const matmulBiasKernel = matmulTiledKernel(true, false);
export const matmulBiasResidualKernel = matmulTiledKernel(true, true);
export const matmulBiasActivationKernel = matmulTiledKernel(true, false, 'gelu');

/** A tile variant: C tile per workgroup (tileM×tileN), K step, and the block of C each thread holds. */
export interface MatmulTile { tileM: number; tileN: number; tileK: number; threadM: number; threadN: number }

/** Largest per-thread block the shader's register arrays hold (MAX_THREAD_TILE in matmul.wgsl). */
export const MAX_THREAD_TILE = 8;

/** Tile variants, named TILE_M x TILE_N x TILE_K / THREAD_M x THREAD_N. */
export const MATMUL_TILES = {
  '32x32x16/4x4': { tileM: 32, tileN: 32, tileK: 16, threadM: 4, threadN: 4 },
  '64x64x32/8x8': { tileM: 64, tileN: 64, tileK: 32, threadM: 8, threadN: 8 },
  '128x128x16/8x8': { tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8 },
} as const satisfies Record<string, MatmulTile>;

// The tile a call gets when none is given; ops pick from kernels/matmul_tiles.json by device class and shape instead.
export const DEFAULT_TILE: MatmulTile = MATMUL_TILES['128x128x16/8x8'];

/** Throws unless the tile fits this device's workgroup limits and the shader's register arrays. */
export function checkTile(limits: DeviceLimits, tile: MatmulTile): void {
  const wgX = tile.tileN / tile.threadN;
  const wgY = tile.tileM / tile.threadM;
  const sharedBytes = 4 * tile.tileK * (tile.tileM + tile.tileN);
  const problem =
    !Number.isInteger(wgX) || !Number.isInteger(wgY) ? 'the tile is not a whole number of thread blocks'
    : tile.threadM > MAX_THREAD_TILE || tile.threadN > MAX_THREAD_TILE ? `a thread block exceeds ${MAX_THREAD_TILE}×${MAX_THREAD_TILE}`
    : wgX * wgY > limits.maxComputeInvocationsPerWorkgroup ? `${wgX * wgY} invocations exceed maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`
    : wgX > limits.maxComputeWorkgroupSizeX || wgY > limits.maxComputeWorkgroupSizeY ? `workgroup ${wgX}×${wgY} exceeds maxComputeWorkgroupSize`
    : sharedBytes > limits.maxComputeWorkgroupStorageSize ? `${sharedBytes} bytes of workgroup memory exceed maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize}`
    : null;
  if (problem) throw new KernelError(`matmul tile ${JSON.stringify(tile)}: ${problem}`);
}

/** What the rows kernel needs of a device: subgroups (the WebGPU feature) and their sizes. */
export interface SubgroupDevice { subgroups: boolean; subgroupMinSize: number; subgroupMaxSize: number }

/** A variant of matmul_rows.wgsl: invocations per workgroup (each 4 columns of C) and groups of 8 rows (1 or 2). */
export interface MatmulRowsVariant { wg: number; rowGroups: 1 | 2 }

/**
 * Rows-kernel variants, named rows (8 · rowGroups) x (4 · wg) per workgroup / wg invocations. On lavapipe (2 cores,
 * 2026-12-02, bench/RESULTS.md, the host no longer spinning beside it) rows 16x64/16 wins: 512^3 in 8.8 ms against
 * 10.5 for rows 16x32/8, 11.6 for rows 8x64/16 and 42.0 for the 128x128 tile, and 1.0-1.1x rows 16x32/8 at
 * Pythia-160m's shapes, since two groups of 8 rows share each block of B. The others stay for the benchmark to
 * re-measure on other CPUs.
 */
export const MATMUL_ROWS_VARIANTS = {
  'rows 8x32/8': { wg: 8, rowGroups: 1 },
  'rows 8x64/16': { wg: 16, rowGroups: 1 },
  'rows 8x128/32': { wg: 32, rowGroups: 1 },
  'rows 16x32/8': { wg: 8, rowGroups: 2 },
  'rows 16x64/16': { wg: 16, rowGroups: 2 },
} as const satisfies Record<string, MatmulRowsVariant>;

const ROW_GROUP = 8; // subgroupBroadcast from lanes 0..7 (matmul_rows.wgsl)
const QUAD = 4;

// One kernel per operand storage width (the arrays' element types) and bias, composed on first use.
const rowsKernels = new Map<string, Kernel>();
function matmulRowsKernel(hasBias: boolean, hasResidual: boolean, activation: Activation | undefined, dtypeA: FloatDType, dtypeB: FloatDType): Kernel {
  const bits = (d: FloatDType) => (d === 'f32' ? 32 : 16);
  const key = `${epilogueKey(hasBias, hasResidual, activation)}/${bits(dtypeA)}/${bits(dtypeB)}`;
  let k = rowsKernels.get(key);
  if (!k) {
    const { includes, absent, constants } = epilogueParts(hasBias, hasResidual, activation);
    rowsKernels.set(key, (k = {
      name: 'matmul',
      source: wgsl(import.meta.url, 'matmul_rows.wgsl', {
        directives: ['enable subgroups;'],
        includes: ['float_storage.wgsl', 'matmul_quads.wgsl', ...includes],
        placeholders: { A_BITS: bits(dtypeA), B_BITS: bits(dtypeB) },
      }),
      inputs: MATMUL_INPUTS,
      outputs: ['c'],
      params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
      constants: ['TRANS_A', 'TRANS_B', 'A_FORMAT', 'B_FORMAT', 'WG', 'ROW_GROUPS', ...constants],
      absent,
    }));
  }
  return k;
}

/** Composed variants of the rows kernel (for the spec tests): every storage width, without and with the whole epilogue. */
export const matmulRowsKernels: readonly Kernel[] = [false, true].flatMap((extra) =>
  (['f32', 'bf16'] as const).flatMap((a) => (['f32', 'bf16'] as const).map((b) => matmulRowsKernel(extra, extra, extra ? 'gelu' : undefined, a, b))));

/**
 * Why the rows kernel cannot compute s on this device (null: it can). Its operands are read in aligned quads:
 * K and the batch strides are multiples of 4, and so is M when A is transposed and N when B is not.
 */
export function matmulRowsUnfit(limits: DeviceLimits, sub: SubgroupDevice, s: MatmulShape, v: MatmulRowsVariant): string | null {
  const wgs = [ceilDiv(s.N, QUAD * v.wg), ceilDiv(s.M, ROW_GROUP * v.rowGroups), s.batch];
  return !sub.subgroups || sub.subgroupMinSize < ROW_GROUP ? `needs subgroups of at least ${ROW_GROUP} invocations`
    : v.wg % sub.subgroupMaxSize !== 0 || v.wg > limits.maxComputeWorkgroupSizeX || v.wg > limits.maxComputeInvocationsPerWorkgroup ? `workgroup ${v.wg} is not a whole number of subgroups within the device's limits`
    : s.K % QUAD !== 0 || s.strideA % QUAD !== 0 || s.strideB % QUAD !== 0 ? 'K and the batch strides must be multiples of 4'
    : s.transA && s.M % QUAD !== 0 ? 'a transposed A needs M a multiple of 4'
    : !s.transB && s.N % QUAD !== 0 ? 'B stored K×N needs N a multiple of 4'
    : wgs.some((w) => w > limits.maxComputeWorkgroupsPerDimension) ? `grid ${wgs} exceeds maxComputeWorkgroupsPerDimension`
    : null;
}

/** The rows kernel (matmul_rows.wgsl) for s; throws where matmulRowsUnfit says why not. */
export function matmulRowsCall(limits: DeviceLimits, sub: SubgroupDevice, s: MatmulShape, v: MatmulRowsVariant = MATMUL_ROWS_VARIANTS['rows 16x64/16'], op = 'matmul'): KernelCall {
  const unfit = matmulRowsUnfit(limits, sub, s, v);
  if (unfit) throw new KernelError(`matmul rows ${JSON.stringify(v)} for ${JSON.stringify(s)}: ${unfit}`);
  return {
    ...matmulCost(s),
    kernel: matmulRowsKernel(s.hasBias, s.hasResidual ?? false, s.activation, s.dtypeA, s.dtypeB),
    op,
    constants: {
      TRANS_A: Number(s.transA), TRANS_B: Number(s.transB),
      A_FORMAT: FORMAT_CONSTANT[s.dtypeA], B_FORMAT: FORMAT_CONSTANT[s.dtypeB], WG: v.wg, ROW_GROUPS: v.rowGroups,
      ...epilogueOf(s).constants,
    },
    params: { M: s.M, N: s.N, K: s.K, strideA: s.strideA, strideB: s.strideB },
    workgroups: [ceilDiv(s.N, QUAD * v.wg), ceilDiv(s.M, ROW_GROUP * v.rowGroups), s.batch],
  };
}

export function matmulCall(limits: DeviceLimits, s: MatmulShape, tile: MatmulTile = DEFAULT_TILE, op = 'matmul'): KernelCall {
  checkTile(limits, tile);
  return {
    ...matmulCost(s),
    kernel: matmulTiledKernel(s.hasBias, s.hasResidual ?? false, s.activation),
    op,
    constants: {
      TRANS_A: Number(s.transA), TRANS_B: Number(s.transB),
      A_FORMAT: FORMAT_CONSTANT[s.dtypeA], B_FORMAT: FORMAT_CONSTANT[s.dtypeB],
      TILE_M: tile.tileM, TILE_N: tile.tileN, TILE_K: tile.tileK, THREAD_M: tile.threadM, THREAD_N: tile.threadN,
      ...epilogueOf(s).constants,
    },
    params: { M: s.M, N: s.N, K: s.K, strideA: s.strideA, strideB: s.strideB },
    workgroups: [ceilDiv(s.N, tile.tileN), ceilDiv(s.M, tile.tileM), s.batch],
  };
}

/** The device classes of the choice table (kernels/matmul_tiles.json). */
export const MATMUL_DEVICE_CLASSES = ['lavapipe', 'nvidia', 'other'] as const;
export type MatmulDeviceClass = (typeof MATMUL_DEVICE_CLASSES)[number];
/** Which device class an adapter is: lavapipe (a CPU), NVIDIA, or any other (also attention_tiles.json's rows). */
export function deviceClassOf(info: { vendor: string; architecture: string; description: string }): MatmulDeviceClass {
  if (/llvmpipe|lavapipe/i.test(info.description) || (info.vendor === 'mesa' && info.architecture === 'software')) return 'lavapipe';
  return /nvidia/i.test(info.vendor) || /nvidia/i.test(info.description) ? 'nvidia' : 'other';
}
/**
 * One shape bucket of a device class: products up to maxMNK (batch·M·N·K; null: any) run `vec4` (matmul_vec4.ts) where
 * it fits, else `rows` where it fits (`rowsEpilogue`, where given, for a product with an epilogue: a bias, a residual
 * or an activation in its store), else `tile`.
 */
export interface MatmulChoice {
  maxMNK: number | null; tile: keyof typeof MATMUL_TILES; rows?: keyof typeof MATMUL_ROWS_VARIANTS; rowsEpilogue?: keyof typeof MATMUL_ROWS_VARIANTS; vec4?: MatmulVec4Name;
}
/** A device class's small-M kernel variants (names of kernels/matmul_small_m.ts SMALL_M_VARIANTS): for one row, for 2..8. */
export interface SmallMChoice { oneRow: string; fewRows: string }
/** Per device class its shape buckets, and under `smallM` its choice for decoding-shaped products. */
export type MatmulTable = Record<MatmulDeviceClass, MatmulChoice[]> & { smallM: Record<MatmulDeviceClass, SmallMChoice> };

export const MATMUL_TABLE_URL = new URL('matmul_tiles.json', import.meta.url);
/** The measured choices (bench/matmul.ts --write-table rewrites the running device's class). */
export const MATMUL_TABLE: MatmulTable = JSON.parse(readFileSync(MATMUL_TABLE_URL, 'utf8'));

/** The call the table picks for s on a device of this class, with these limits and subgroups. */
export function chosenMatmulCall(table: MatmulTable, device: MatmulDeviceClass, limits: DeviceLimits, sub: SubgroupDevice, s: MatmulShape, op = 'matmul'): KernelCall {
  const mnk = s.batch * s.M * s.N * s.K;
  const choice = table[device].find((c) => c.maxMNK === null || mnk <= c.maxMNK) ?? table[device][table[device].length - 1];
  if (!choice) throw new KernelError(`matmul table has no choice for ${device}`);
  const vec4 = choice.vec4 && MATMUL_VEC4_VARIANTS[choice.vec4];
  if (vec4 && !matmulVec4Unfit(limits, s, vec4)) return matmulVec4Call(limits, s, vec4, op);
  const rowsName = (s.hasBias || s.hasResidual || s.activation) && choice.rowsEpilogue ? choice.rowsEpilogue : choice.rows;
  const rows = rowsName && MATMUL_ROWS_VARIANTS[rowsName];
  if (rows && !matmulRowsUnfit(limits, sub, s, rows)) return matmulRowsCall(limits, sub, s, rows, op);
  return matmulCall(limits, s, MATMUL_TILES[choice.tile], op);
}
