// Batched C = op(A) · op(B) (+ bias), tiled through workgroup memory and register-blocked.
import { bytesPerElement, FORMAT_CONSTANT, type FloatDType } from './dtype.ts';
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

// The bias is an optional input: the variant without it neither declares nor binds it (no_bias.wgsl).
function matmulVariant(hasBias: boolean): Kernel {
  return {
    name: 'matmul',
    source: wgsl(import.meta.url, 'matmul.wgsl', { includes: ['float_storage.wgsl', hasBias ? 'bias.wgsl' : 'no_bias.wgsl'] }),
    inputs: ['a', 'b', 'bias'],
    outputs: ['c'],
    params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
    constants: ['TRANS_A', 'TRANS_B', 'A_FORMAT', 'B_FORMAT', 'TILE_M', 'TILE_N', 'TILE_K', 'THREAD_M', 'THREAD_N'],
    absent: hasBias ? [] : ['bias'],
  };
}

export const matmulKernel = matmulVariant(false);
export const matmulBiasKernel = matmulVariant(true);

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

// Fastest variant in bench/matmul.ts on lavapipe at every square size and 3 of 4 Pythia shapes (re-measure on a GPU).
export const DEFAULT_TILE: MatmulTile = MATMUL_TILES['128x128x16/8x8'];

/** One batched product: op(A) is M×K, op(B) K×N, per batch entry; strides in elements, 0 to broadcast. */
export interface MatmulShape {
  batch: number;
  M: number;
  N: number;
  K: number;
  strideA: number;
  strideB: number;
  transA: boolean;
  transB: boolean;
  hasBias: boolean;
  dtypeA: FloatDType;
  dtypeB: FloatDType;
}

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

export function matmulCall(limits: DeviceLimits, s: MatmulShape, tile: MatmulTile = DEFAULT_TILE, op = 'matmul'): KernelCall {
  checkTile(limits, tile);
  const aElements = (s.strideA === 0 ? 1 : s.batch) * s.M * s.K;
  const bElements = (s.strideB === 0 ? 1 : s.batch) * s.K * s.N;
  const outputs = s.batch * s.M * s.N;
  return {
    kernel: s.hasBias ? matmulBiasKernel : matmulKernel,
    op,
    constants: {
      TRANS_A: Number(s.transA), TRANS_B: Number(s.transB),
      A_FORMAT: FORMAT_CONSTANT[s.dtypeA], B_FORMAT: FORMAT_CONSTANT[s.dtypeB],
      TILE_M: tile.tileM, TILE_N: tile.tileN, TILE_K: tile.tileK, THREAD_M: tile.threadM, THREAD_N: tile.threadN,
    },
    params: { M: s.M, N: s.N, K: s.K, strideA: s.strideA, strideB: s.strideB },
    workgroups: [ceilDiv(s.N, tile.tileN), ceilDiv(s.M, tile.tileM), s.batch],
    // A multiply-add per (output, k); one add per output for the bias. Each operand is read from memory once
    // (tile re-reads are cache traffic), C written once.
    cost: {
      flops: 2 * outputs * s.K + (s.hasBias ? outputs : 0),
      bytesRead: bytesPerElement(s.dtypeA) * aElements + bytesPerElement(s.dtypeB) * bElements + (s.hasBias ? 4 * s.N : 0),
      bytesWritten: 4 * outputs,
    },
  };
}
