// out = x · weightᵀ (+ bias) (+ residual) for x with a few rows (decoding), reading each weight row once and contiguously;
// and the grouped products of one x with several weights in one dispatch (SmallMGroup), bit for bit the separate ones.
import { bytesPerElement, FORMAT_CONSTANT, type FloatDType } from './dtype.ts';
import { ceilDiv, grid1d, KernelError, nextPowerOfTwo, reductionWorkgroupSize, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import { ACTIVATIONS, activationFlops, type Activation } from './activation.ts';
import type { MatmulDeviceClass, MatmulTable } from './matmul.ts';
import { epilogueKey, epilogueOf, epilogueParts, type MatmulShape } from './matmul_shape.ts';

const kernels = new Map<string, Kernel>();
/** The kernel with or without a bias, a residual and an activation (matmul_shape.ts epilogueParts). */
function smallMKernel(hasBias: boolean, hasResidual: boolean, activation?: Activation): Kernel {
  const key = epilogueKey(hasBias, hasResidual, activation);
  let k = kernels.get(key);
  if (!k) {
    const { includes, absent, constants } = epilogueParts(hasBias, hasResidual, activation);
    kernels.set(key, (k = {
      name: 'matmulSmallM',
      source: wgsl(import.meta.url, 'matmul_small_m.wgsl', { includes: ['float_storage.wgsl', ...includes, 'small_m_weight.wgsl'] }),
      inputs: ['x', 'weight', 'bias', 'residual'],
      outputs: ['out'],
      params: [['N', 'u32'], ['K', 'u32'], ['M', 'u32']],
      constants: ['ROWS', 'COLUMNS', 'WG', 'WEIGHT_FORMAT', ...constants],
      absent,
    }));
  }
  return k;
}

export const matmulSmallMKernel = smallMKernel(false, false);
export const matmulSmallMBiasResidualKernel = smallMKernel(true, true);
export const matmulSmallMBiasActivationKernel = smallMKernel(true, false, 'gelu');

/** Three weights side by side: out = [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ] (small_m_concatenated.wgsl). */
export const matmulSmallMConcatenatedKernel: Kernel = {
  name: 'matmulSmallM',
  source: wgsl(import.meta.url, 'matmul_small_m.wgsl', { includes: ['float_storage.wgsl', 'small_m_concatenated.wgsl'] }),
  inputs: ['x', 'weight0', 'weight1', 'weight2'],
  outputs: ['out'],
  params: [['N', 'u32'], ['K', 'u32'], ['M', 'u32']],
  constants: ['ROWS', 'COLUMNS', 'WG', 'WEIGHT_FORMAT', 'FIRST1', 'FIRST2'],
};

/** Two weights gated: out = f(x·gateᵀ) · (x·upᵀ) (small_m_gated.wgsl; f by FN). */
export const matmulSmallMGatedKernel: Kernel = {
  name: 'matmulSmallM',
  source: wgsl(import.meta.url, 'matmul_small_m.wgsl', { includes: ['float_storage.wgsl', 'activation_math.wgsl', 'small_m_gated.wgsl'] }),
  inputs: ['x', 'gate', 'up', 'residual'],
  outputs: ['out'],
  params: [['N', 'u32'], ['K', 'u32'], ['M', 'u32']],
  constants: ['ROWS', 'COLUMNS', 'WG', 'WEIGHT_FORMAT', 'FN'],
  absent: ['residual'],
};

/** The most rows of x the kernel takes (MAX_ROWS in matmul_small_m.wgsl): its partial sums live in registers. */
export const SMALL_M_MAX_ROWS = 8;
/** The most output columns per workgroup (MAX_COLUMNS in matmul_small_m.wgsl). */
export const SMALL_M_MAX_COLUMNS = 8;

/** Output columns (weight rows) per workgroup, and threads per workgroup before the device's limits cap them. */
export interface SmallMVariant { columns: number; threads: number }

/**
 * Variants, named columns x threads; kernels/matmul_tiles.json (`smallM`) picks one per device class, the others
 * stay for bench/matmul.ts (figures: bench/RESULTS.md). On an H200 (K 4096, bf16) one row runs fastest with 4x256
 * (380 GB/s at N 4096), 2 to 8 rows with 2x256 (more partial sums per thread spill). On lavapipe a workgroup of 8
 * threads, one fiber there, so that the reduction tree's barriers switch no fiber: 4x8 for one row, 8x8 for more.
 * Against the 4x64 kept before (bench/matmul.ts decode, one run, 2026-12-03): Mistral-7B's N 4096 at one row 1.3x
 * (f32 18.5 -> 13.8 ms, bf16 13.3 -> 9.3), at 8 rows 1.3-2.4x (f32 89.7 -> 37.2, bf16 63.2 -> 47.8); the demo's
 * rollout products 2.1-2.2x (0.20 -> 0.09 ms at one row of its qkv).
 */
export const SMALL_M_VARIANTS = {
  '2x256': { columns: 2, threads: 256 },
  '4x64': { columns: 4, threads: 64 },
  '4x8': { columns: 4, threads: 8 },
  '8x8': { columns: 8, threads: 8 },
  '4x256': { columns: 4, threads: 256 },
  '8x256': { columns: 8, threads: 256 },
} as const satisfies Record<string, SmallMVariant>;

/** The variant the table picks on a device of this class for M rows: its `oneRow` for one, `fewRows` for 2..8. */
export function smallMVariantFor(table: MatmulTable, device: MatmulDeviceClass, M: number): SmallMVariant {
  const name = M === 1 ? table.smallM[device].oneRow : table.smallM[device].fewRows;
  if (!Object.hasOwn(SMALL_M_VARIANTS, name))
    throw new KernelError(`kernels/matmul_tiles.json: small-M variant '${name}' for ${device} is none of ${Object.keys(SMALL_M_VARIANTS).join(', ')}`);
  return SMALL_M_VARIANTS[name as keyof typeof SMALL_M_VARIANTS];
}

/** Whether the small-M kernel computes s: one f32 x of 1..SMALL_M_MAX_ROWS rows times a transposed weight. */
export function fitsSmallM(s: MatmulShape): boolean {
  return s.batch === 1 && !s.transA && s.transB && s.dtypeA === 'f32' && s.M >= 1 && s.M <= SMALL_M_MAX_ROWS;
}

/**
 * The rows the kernel computes for M (its ROWS): M's power-of-two bucket, so that a batch shrinking row by row (a
 * rollout compacting) compiles a pipeline for 1, 2, 4 and 8 rows only. A bucket's extra rows repeat a real row and
 * are not stored: each row's sums are the same, bit for bit, in any bucket; like a tile's padding, they are not charged.
 */
export function smallMRows(M: number): number { return nextPowerOfTwo(M); }

/** Threads per workgroup for M rows of K with the variant: each holds the bucket's rows·columns partial sums in workgroup memory for the reduction; no more threads than pairs of K. */
function smallMThreads(limits: DeviceLimits, M: number, K: number, variant: SmallMVariant): number {
  if (!Number.isInteger(variant.columns) || variant.columns < 1 || variant.columns > SMALL_M_MAX_COLUMNS)
    throw new KernelError(`matmulSmallM variant ${JSON.stringify(variant)}: columns must be 1..${SMALL_M_MAX_COLUMNS}`);
  return reductionWorkgroupSize(limits, 4 * smallMRows(M) * variant.columns, 0, Math.min(variant.threads, nextPowerOfTwo(ceilDiv(K, 2))));
}

/** The product s with the given variant (the table's choice: smallMVariantFor). */
export function matmulSmallMCall(limits: DeviceLimits, s: MatmulShape, variant: SmallMVariant, op = 'matmulSmallM'): KernelCall {
  if (!fitsSmallM(s)) throw new KernelError(`matmulSmallM: ${JSON.stringify(s)} is not one f32 x of 1..${SMALL_M_MAX_ROWS} rows times a transposed weight`);
  const { M, N, K } = s;
  const threads = smallMThreads(limits, M, K, variant);
  return {
    kernel: smallMKernel(s.hasBias, s.hasResidual ?? false, s.activation),
    op,
    constants: { ROWS: smallMRows(M), COLUMNS: variant.columns, WG: threads, WEIGHT_FORMAT: FORMAT_CONSTANT[s.dtypeB], ...epilogueOf(s).constants },
    params: { N, K, M },
    workgroups: grid1d(ceilDiv(N, variant.columns), 1, limits),
    // A multiply-add per (output, k), the epilogue's per output (epilogueOf). The weight is read from memory once,
    // x, bias and residual once (every workgroup re-reads x from cache), out written once.
    cost: {
      flops: 2 * M * N * K + epilogueOf(s, M * N).flops,
      fused: epilogueOf(s, M * N).fused,
      bytesRead: bytesPerElement(s.dtypeB) * N * K + 4 * M * K + (s.hasBias ? 4 * N : 0) + (s.hasResidual ? 4 * M * N : 0),
      bytesWritten: 4 * M * N,
    },
  };
}

/**
 * Several bias-free products of one x [M, K] (f32, 1..SMALL_M_MAX_ROWS rows) with weights [n, K] of one storage format,
 * in one dispatch: 'concatenated' out [M, Σ widths] = [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ] (q, k and v); 'gated' out [M, width] =
 * f(x·gateᵀ) · (x·upᵀ), `op` naming the gate in the ledger (SwiGLU: f silu, op 'swiglu', as gatedActivationCall).
 */
export type SmallMGroup =
  | { form: 'concatenated'; widths: readonly [number, number, number] }
  | { form: 'gated'; width: number; fn: Activation; op: string };

/**
 * The grouped product with the given variant (the table's choice for M rows, as the separate products take): every
 * column summed with the separate products' WG and order, so the same bits. Cost: the parts' (their multiply-adds,
 * and the gate's f(g)·u as `fused`, charged to its op as the ledger charges a separate gatedActivation), the weights
 * and x read once.
 */
export function matmulSmallMGroupCall(limits: DeviceLimits, M: number, K: number, dtypeB: FloatDType, group: SmallMGroup, variant: SmallMVariant, op = 'matmulSmallM'): KernelCall {
  const widths = group.form === 'concatenated' ? group.widths : [group.width, group.width];
  if (!Number.isInteger(M) || M < 1 || M > SMALL_M_MAX_ROWS || !Number.isInteger(K) || K < 1 || widths.some((n) => !Number.isInteger(n) || n < 1))
    throw new KernelError(`matmulSmallM ${group.form}: M ${M} (1..${SMALL_M_MAX_ROWS}), K ${K} and widths [${widths}] must be positive integers`);
  if (group.form === 'gated' && variant.columns % 2 !== 0)
    throw new KernelError(`matmulSmallM gated: variant ${JSON.stringify(variant)} must have an even number of columns (a gate and an up column each)`);
  const N = widths.reduce((a, b) => a + b, 0); // the product's columns
  const outputs = M * (group.form === 'gated' ? group.width : N);
  const gate = group.form === 'gated' ? [{ op: group.op, flops: (activationFlops(group.fn) + 1) * outputs }] : [];
  return {
    kernel: group.form === 'gated' ? matmulSmallMGatedKernel : matmulSmallMConcatenatedKernel,
    op,
    constants: {
      ROWS: smallMRows(M), COLUMNS: variant.columns, WG: smallMThreads(limits, M, K, variant), WEIGHT_FORMAT: FORMAT_CONSTANT[dtypeB],
      ...(group.form === 'gated' ? { FN: ACTIVATIONS[group.fn] } : { FIRST1: widths[0], FIRST2: widths[0] + widths[1] }),
    },
    params: { N, K, M },
    // Concatenated, each weight's rows fill whole workgroups (small_m_concatenated.wgsl GROUPS1, GROUPS2); their padding reads nothing.
    workgroups: grid1d(group.form === 'gated' ? ceilDiv(N, variant.columns) : widths.reduce((n, w) => n + ceilDiv(w, variant.columns), 0), 1, limits),
    cost: {
      flops: 2 * M * N * K + gate.reduce((n, f) => n + f.flops, 0),
      fused: gate,
      bytesRead: bytesPerElement(dtypeB) * N * K + 4 * M * K,
      bytesWritten: 4 * outputs,
    },
  };
}
