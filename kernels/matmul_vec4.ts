// The vectorised tiled matmul for GPUs (matmul_vec4.wgsl): f32 operands read as vec4 from global memory, staged as
// vec4 in two workgroup buffers (the next k tile prefetched into registers), 8×8 or 4×4 blocks per thread as quads.
// Numbered variants beside the scalar tiled kernel (matmul.wgsl, its reference and fallback); kernels/matmul_tiles.json
// picks one per device class and shape bucket (`vec4`), where matmulVec4Unfit allows it.
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import type { Activation } from './activation.ts';
import { epilogueOf, epilogueParts, MATMUL_INPUTS, matmulCost, type MatmulShape } from './matmul_shape.ts';

/**
 * A variant: C tile per workgroup (tileM×tileN), K step (a multiple of 4), each thread's block (4, 8 or 16 each way, 128
 * outputs at most), and optionally warpX, the threads of each group of 32 along N (by default rows of the workgroup's
 * tileN / threadN).
 */
export interface MatmulVec4Variant { tileM: number; tileN: number; tileK: number; threadM: 4 | 8 | 16; threadN: 4 | 8 | 16; warpX?: number }

/**
 * Variants, named vec4 TILE_M x TILE_N x TILE_K / THREAD_M x THREAD_N (threads: the tile over the block; workgroup
 * bytes: two buffers of TILE_K · (TILE_M + TILE_N) f32). 128x128x8/8x8 is the classic SGEMM shape (256 threads, 16 KiB);
 * 8x16 blocks read 6 vec4 for 128 multiply-adds (more registers, fewer workgroups an SM); w8x4 arranges each warp as
 * 8 × 4 threads; the smaller tiles give more workgroups to products of 512 tokens (an H100 has 132 SMs). Not measured
 * on a GPU yet.
 */
export const MATMUL_VEC4_VARIANTS = {
  'vec4 128x128x8/8x8': { tileM: 128, tileN: 128, tileK: 8, threadM: 8, threadN: 8 }, // 256 threads, 16 KiB
  'vec4 128x128x16/8x8': { tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8 }, // 256 threads, 32 KiB
  'vec4 128x128x8/8x8 w8x4': { tileM: 128, tileN: 128, tileK: 8, threadM: 8, threadN: 8, warpX: 8 }, // warps of 8 × 4 threads
  'vec4 128x128x16/8x8 w8x4': { tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8, warpX: 8 },
  'vec4 128x256x8/8x16': { tileM: 128, tileN: 256, tileK: 8, threadM: 8, threadN: 16 }, // 256 threads, 24 KiB
  'vec4 256x128x8/16x8': { tileM: 256, tileN: 128, tileK: 8, threadM: 16, threadN: 8 }, // 256 threads, 24 KiB
  'vec4 128x64x8/8x8': { tileM: 128, tileN: 64, tileK: 8, threadM: 8, threadN: 8 }, // 128 threads, 12 KiB
  'vec4 128x64x16/8x8': { tileM: 128, tileN: 64, tileK: 16, threadM: 8, threadN: 8 }, // 128 threads, 24 KiB
  'vec4 64x64x8/8x8': { tileM: 64, tileN: 64, tileK: 8, threadM: 8, threadN: 8 }, // 64 threads, 8 KiB
  'vec4 64x64x16/8x8': { tileM: 64, tileN: 64, tileK: 16, threadM: 8, threadN: 8 }, // 64 threads, 16 KiB
  'vec4 64x64x16/4x4': { tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4 }, // 256 threads, 16 KiB
  'vec4 64x64x16/4x4 w8x4': { tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4, warpX: 8 },
  'vec4 32x32x16/4x4': { tileM: 32, tileN: 32, tileK: 16, threadM: 4, threadN: 4 }, // 64 threads, 8 KiB
} as const satisfies Record<string, MatmulVec4Variant>;

export type MatmulVec4Name = keyof typeof MATMUL_VEC4_VARIANTS;

/** Per-thread global loads of one operand's k tile that the shader's registers hold (MAX_LOADS in matmul_vec4.wgsl). */
export const MAX_VEC4_LOADS = 4;

const kernels = new Map<string, Kernel>();
/**
 * The kernel with its store's epilogue (matmul_shape.ts epilogueParts: bias, residual, activation; the variant without an
 * input neither declares nor binds it), its register arrays sized for a block of threadM × threadN (4, 8 or 16 each).
 */
export function matmulVec4Kernel(hasBias: boolean, hasResidual: boolean, threadM: number, threadN: number, activation?: Activation): Kernel {
  const key = `${hasBias}/${hasResidual}/${activation !== undefined}/${threadM}x${threadN}`;
  let k = kernels.get(key);
  if (!k) {
    const { includes, absent, constants } = epilogueParts(hasBias, hasResidual, activation);
    kernels.set(key, (k = {
      name: 'matmul',
      source: wgsl(import.meta.url, 'matmul_vec4.wgsl', { includes, placeholders: { MAX_QUADS_M: threadM / 4, MAX_QUADS_N: threadN / 4 } }),
      inputs: MATMUL_INPUTS,
      outputs: ['c'],
      params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
      constants: ['TRANS_A', 'TRANS_B', 'TILE_M', 'TILE_N', 'TILE_K', 'THREAD_M', 'THREAD_N', 'WARP_X', ...constants],
      absent,
    }));
  }
  return k;
}

export const matmulVec4PlainKernel = matmulVec4Kernel(false, false, 8, 8);
export const matmulVec4EpilogueKernel = matmulVec4Kernel(true, true, 16, 8, 'gelu');

/** Bytes of workgroup memory a variant stages: two buffers of each operand's TILE_K rows. */
export function matmulVec4WorkgroupBytes(v: MatmulVec4Variant): number {
  return 2 * 4 * v.tileK * (v.tileM + v.tileN);
}

/**
 * Why the variant cannot compute s on this device (null: it can): a malformed variant, the device's workgroup limits
 * (invocations, workgroup memory), 16-bit operands (the tiled kernel takes those), or a stored row length or batch
 * stride that is no multiple of 4 (a vec4 holds 4 elements of a row).
 */
export function matmulVec4Unfit(limits: DeviceLimits, s: MatmulShape, v: MatmulVec4Variant): string | null {
  const wgX = v.tileN / v.threadN;
  const wgY = v.tileM / v.threadM;
  const threads = wgX * wgY;
  const bytes = matmulVec4WorkgroupBytes(v);
  const loads = Math.max(ceilDiv(v.tileK * v.tileM / 4, threads), ceilDiv(v.tileK * v.tileN / 4, threads));
  const grid = [ceilDiv(s.N, v.tileN), ceilDiv(s.M, v.tileM), s.batch];
  return ![4, 8, 16].includes(v.threadM) || ![4, 8, 16].includes(v.threadN) || v.threadM * v.threadN > 128
    ? 'a thread holds 4, 8 or 16 rows and columns (1, 2 or 4 quads), 128 outputs at most'
    : !Number.isInteger(wgX) || !Number.isInteger(wgY) || v.tileM % 32 !== 0 || v.tileN % 32 !== 0 || v.tileK % 4 !== 0 || v.tileK <= 0
      ? 'the tile must be a whole number of thread blocks, TILE_M and TILE_N multiples of 32 (the staging swizzle), TILE_K of 4'
    : v.warpX !== undefined && (32 % v.warpX !== 0 || wgX % v.warpX !== 0 || wgY % (32 / v.warpX) !== 0)
      ? `warps of ${v.warpX} × ${32 / v.warpX} threads do not tile the workgroup ${wgX}×${wgY}`
    : loads > MAX_VEC4_LOADS ? `${loads} global vec4 loads per thread and k tile exceed ${MAX_VEC4_LOADS}`
    : threads > limits.maxComputeInvocationsPerWorkgroup ? `${threads} invocations exceed maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`
    : wgX > limits.maxComputeWorkgroupSizeX || wgY > limits.maxComputeWorkgroupSizeY ? `workgroup ${wgX}×${wgY} exceeds maxComputeWorkgroupSize`
    : bytes > limits.maxComputeWorkgroupStorageSize ? `${bytes} bytes of workgroup memory (two staging buffers) exceed maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize}`
    : s.dtypeA !== 'f32' || s.dtypeB !== 'f32' ? `operands are ${s.dtypeA} and ${s.dtypeB}: this kernel reads f32 only (the tiled kernel takes 16-bit ones)`
    : s.strideA % 4 !== 0 || s.strideB % 4 !== 0 ? 'the batch strides must be multiples of 4'
    : s.transA && s.M % 4 !== 0 ? 'a transposed A (stored K×M) needs M a multiple of 4'
    : !s.transA && s.K % 4 !== 0 ? 'A stored M×K needs K a multiple of 4'
    : s.transB && s.K % 4 !== 0 ? 'B stored N×K needs K a multiple of 4'
    : !s.transB && s.N % 4 !== 0 ? 'B stored K×N needs N a multiple of 4'
    : grid.some((w) => w > limits.maxComputeWorkgroupsPerDimension) ? `grid ${grid} exceeds maxComputeWorkgroupsPerDimension`
    : null;
}

/** The vectorised kernel in variant v for s; throws where matmulVec4Unfit says why not. */
export function matmulVec4Call(limits: DeviceLimits, s: MatmulShape, v: MatmulVec4Variant, op = 'matmul'): KernelCall {
  const unfit = matmulVec4Unfit(limits, s, v);
  if (unfit) throw new KernelError(`matmul vec4 ${JSON.stringify(v)} for ${JSON.stringify(s)}: ${unfit}`);
  return {
    ...matmulCost(s),
    kernel: matmulVec4Kernel(s.hasBias, s.hasResidual ?? false, v.threadM, v.threadN, s.activation),
    op,
    constants: {
      TRANS_A: Number(s.transA), TRANS_B: Number(s.transB),
      TILE_M: v.tileM, TILE_N: v.tileN, TILE_K: v.tileK, THREAD_M: v.threadM, THREAD_N: v.threadN, WARP_X: v.warpX ?? 0,
      ...epilogueOf(s).constants,
    },
    params: { M: s.M, N: s.N, K: s.K, strideA: s.strideA, strideB: s.strideB },
    workgroups: [ceilDiv(s.N, v.tileN), ceilDiv(s.M, v.tileM), s.batch],
  };
}
