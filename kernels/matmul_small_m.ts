// out = x · weightᵀ (+ bias) for x with a few rows (decoding), reading each weight row once and contiguously.
import { bytesPerElement, FORMAT_CONSTANT } from './dtype.ts';
import { ceilDiv, grid1d, KernelError, nextPowerOfTwo, reductionWorkgroupSize, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import type { MatmulShape } from './matmul.ts';

// The bias is an optional input: the variant without it neither declares nor binds it (no_bias.wgsl).
function smallMVariant(hasBias: boolean): Kernel {
  return {
    name: 'matmulSmallM',
    source: wgsl(import.meta.url, 'matmul_small_m.wgsl', { includes: ['float_storage.wgsl', hasBias ? 'bias.wgsl' : 'no_bias.wgsl'] }),
    inputs: ['x', 'weight', 'bias'],
    outputs: ['out'],
    params: [['N', 'u32'], ['K', 'u32']],
    constants: ['ROWS', 'COLUMNS', 'WG', 'WEIGHT_FORMAT'],
    absent: hasBias ? [] : ['bias'],
  };
}

export const matmulSmallMKernel = smallMVariant(false);
export const matmulSmallMBiasKernel = smallMVariant(true);

/** The most rows of x the kernel takes (MAX_ROWS in matmul_small_m.wgsl): its partial sums live in registers. */
export const SMALL_M_MAX_ROWS = 8;
/** The most output columns per workgroup (MAX_COLUMNS in matmul_small_m.wgsl). */
export const SMALL_M_MAX_COLUMNS = 8;

/** Output columns (weight rows) per workgroup, and threads per workgroup before the device's limits cap them. */
export interface SmallMVariant { columns: number; threads: number }

/** Variants, named columns x threads. */
export const SMALL_M_VARIANTS = {
  '2x256': { columns: 2, threads: 256 },
  '4x64': { columns: 4, threads: 64 },
  '4x256': { columns: 4, threads: 256 },
  '8x256': { columns: 8, threads: 256 },
} as const satisfies Record<string, SmallMVariant>;

/**
 * Measured on an H200 (bench/gpu.ts decode, K 4096, bf16, bench/RESULTS.md): one row runs fastest with 4 columns a
 * workgroup (380 GB/s at N 4096, 900 at N 14336), 2 to 8 rows with 2 (more partial sums per thread spill).
 */
export function smallMVariantFor(M: number): SmallMVariant {
  return M === 1 ? SMALL_M_VARIANTS['4x256'] : SMALL_M_VARIANTS['2x256'];
}

/** Whether the small-M kernel computes s: one f32 x of 1..SMALL_M_MAX_ROWS rows times a transposed weight. */
export function fitsSmallM(s: MatmulShape): boolean {
  return s.batch === 1 && !s.transA && s.transB && s.dtypeA === 'f32' && s.M >= 1 && s.M <= SMALL_M_MAX_ROWS;
}

export function matmulSmallMCall(limits: DeviceLimits, s: MatmulShape, variant: SmallMVariant = smallMVariantFor(s.M), op = 'matmulSmallM'): KernelCall {
  if (!fitsSmallM(s)) throw new KernelError(`matmulSmallM: ${JSON.stringify(s)} is not one f32 x of 1..${SMALL_M_MAX_ROWS} rows times a transposed weight`);
  if (!Number.isInteger(variant.columns) || variant.columns < 1 || variant.columns > SMALL_M_MAX_COLUMNS)
    throw new KernelError(`matmulSmallM variant ${JSON.stringify(variant)}: columns must be 1..${SMALL_M_MAX_COLUMNS}`);
  const { M, N, K } = s;
  // Each thread holds M·columns partial sums in workgroup memory for the reduction; no more threads than pairs of K.
  const threads = reductionWorkgroupSize(limits, 4 * M * variant.columns, 0, Math.min(variant.threads, nextPowerOfTwo(ceilDiv(K, 2))));
  return {
    kernel: s.hasBias ? matmulSmallMBiasKernel : matmulSmallMKernel,
    op,
    constants: { ROWS: M, COLUMNS: variant.columns, WG: threads, WEIGHT_FORMAT: FORMAT_CONSTANT[s.dtypeB] },
    params: { N, K },
    workgroups: grid1d(ceilDiv(N, variant.columns), 1, limits),
    // A multiply-add per (output, k), an add per output for the bias. The weight is read from memory once, x and
    // bias once (every workgroup re-reads x from cache), out written once.
    cost: {
      flops: 2 * M * N * K + (s.hasBias ? M * N : 0),
      bytesRead: bytesPerElement(s.dtypeB) * N * K + 4 * M * K + (s.hasBias ? 4 * N : 0),
      bytesWritten: 4 * M * N,
    },
  };
}
