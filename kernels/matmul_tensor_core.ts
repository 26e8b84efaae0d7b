// Tensor-core variant of the batched matmul (matmul_tensor_core.wgsl): C = op(A) · op(B) (+ bias) on subgroup
// matrices (chromium-experimental-subgroup-matrix), f16 operands, f32 accumulators, f32 C; all four transpose forms.
// The tiled f32 kernel (matmul.ts) stays the reference and the fallback.
//
// The matrix types take no override constant, so the matrix shape, subgroup size and tiles are placeholders of
// the WGSL (each combination its own shader, composed once and cached); the transposes are override constants.
// Nothing here reads a device: what the plan needs of one is an argument (SubgroupMatrixDevice).
import { ceilDiv, KernelError, wgsl, type Kernel, type KernelCall } from './spec.ts';
import type { Activation } from './activation.ts';
import { epilogueKey, epilogueOf, epilogueParts, MATMUL_INPUTS, matmulCost, type MatmulShape } from './matmul_shape.ts';
import {
  TENSOR_CORE_DIRECTIVES, tensorCoreDevice, tensorCoreDeviceUnsupported, tensorCoreShapes,
  type MatrixShape, type SubgroupMatrixDevice, type TensorCoreDevice,
} from './attention_forward_tensor_core.ts';

/** Everything that makes one shader: the matrix shape, the subgroup size, and how the workgroup tiles C. */
export interface MatmulTensorCoreVariant {
  shape: MatrixShape;
  /** Lanes per subgroup: the device's one subgroup size. */
  subgroupSize: number;
  /** Subgroups per workgroup along M and along N. */
  subgroupRows: number;
  subgroupCols: number;
  /** Result matrices each subgroup holds along M and along N. */
  matrixRows: number;
  matrixCols: number;
}

// Row padding of the tiles: 8 halves (16 bytes) and 4 floats keep each row 16-byte aligned, as Vulkan's
// cooperative-matrix loads and stores require of their pointer and stride, and shift rows across the banks.
const F16_PAD = 8;
const F32_PAD = 4;
/** The K step: two to four matrix steps per staging, and tiles that fit lavapipe's 32 KiB at the largest tile. */
const BK = 32;

/** The constants of one variant's shader and its workgroup memory. */
export function matmulTensorCoreLayout(v: MatmulTensorCoreVariant) {
  const { M: TM, N: TN, K: TK } = v.shape;
  const SG = v.subgroupSize, SGM = v.subgroupRows, SGN = v.subgroupCols, WM = v.matrixRows, WN = v.matrixCols;
  const NSG = SGM * SGN, WG = SG * NSG;
  const BM = SGM * WM * TM, BN = SGN * WN * TN;
  const A_STRIDE = BK + F16_PAD, B_STRIDE = BN + F16_PAD, C_STRIDE = TN + F32_PAD;
  const A_SIZE = BM * A_STRIDE, B_SIZE = BK * B_STRIDE, C_SIZE = NSG * TM * C_STRIDE;
  const round16 = (bytes: number) => ceilDiv(bytes, 16) * 16;
  const bytes = round16(2 * A_SIZE) + round16(2 * B_SIZE) + round16(4 * C_SIZE);
  return { SG, SGM, SGN, NSG, WG, TM, TN, TK, WM, WN, BM, BN, BK, A_STRIDE, B_STRIDE, C_STRIDE, A_SIZE, B_SIZE, C_SIZE, bytes };
}

// Largest first: subgroups (rows x cols) and result matrices per subgroup (rows x cols). 4x4 matrices a subgroup
// was the fastest of the simple variants measured on an H100 (../shared/gpu/README.md: 14.4 TFLOP/s against
// 10.2 for 4x2 and 7.7 for 2x2).
const TILE_CANDIDATES: readonly Omit<MatmulTensorCoreVariant, 'shape' | 'subgroupSize'>[] = [
  { subgroupRows: 2, subgroupCols: 2, matrixRows: 4, matrixCols: 4 },
  { subgroupRows: 2, subgroupCols: 2, matrixRows: 2, matrixCols: 2 },
  { subgroupRows: 1, subgroupCols: 1, matrixRows: 2, matrixCols: 2 },
  { subgroupRows: 1, subgroupCols: 1, matrixRows: 1, matrixCols: 1 },
];

/** Why a matrix shape cannot serve this kernel (null: it can). */
function shapeUnusable(shape: MatrixShape): string | null {
  // Matrix offsets step by TK halves in aTile and TN halves in bTile, TN floats in cTile: 16-byte aligned.
  if (shape.N % 8 !== 0 || shape.K % 8 !== 0) return `N${shape.N} K${shape.K}: rows of 16 bytes (8 halves) are needed`;
  if (BK % shape.K !== 0) return `K${shape.K} does not divide the K step ${BK}`;
  return null;
}

/**
 * The variant for an M×N product on this device: the largest tile that fits its workgroup memory and invocations
 * and is not larger than the product (rounded up to whole matrices), else the smallest that fits. Pure (the
 * device is given), so that it can be checked without a GPU. Any M, N, K: the kernel zero-pads ragged edges.
 */
export function planMatmulTensorCore(M: number, N: number, shape: MatrixShape, device: TensorCoreDevice): { variant?: MatmulTensorCoreVariant; reason?: string } {
  const unusable = shapeUnusable(shape);
  if (unusable) return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K}: ${unusable}` };
  const fitting = TILE_CANDIDATES
    .map((t): MatmulTensorCoreVariant => ({ shape, subgroupSize: device.subgroupSize, ...t }))
    .filter((v) => { const L = matmulTensorCoreLayout(v); return L.WG <= device.maxInvocations && L.bytes <= device.maxWorkgroupBytes; });
  if (fitting.length === 0) return { reason: `no tile fits ${device.maxWorkgroupBytes} bytes of workgroup memory and ${device.maxInvocations} invocations` };
  const rows = ceilDiv(M, shape.M) * shape.M, cols = ceilDiv(N, shape.N) * shape.N;
  const variant = fitting.find((v) => { const L = matmulTensorCoreLayout(v); return L.BM <= rows && L.BN <= cols; }) ?? fitting[fitting.length - 1]!;
  return { variant };
}

/** Why the tensor-core kernel cannot compute s at all (null: it can), before any plan. */
function productUnsupported(s: MatmulShape): string | null {
  if (s.dtypeA !== 'f16' || s.dtypeB !== 'f16')
    return `operands are ${s.dtypeA} and ${s.dtypeB}: subgroup matrices take f16 operands (Dawn has no bf16 or f32 ones); store both as f16, or use the tiled kernel`;
  if (s.M < 1 || s.N < 1 || s.K < 1 || s.batch < 1) return 'an empty product';
  return null;
}

/**
 * The variant for s on this device (its largest f16 -> f32 matrix shape unless one is given), or the reason there
 * is none: a device without the feature, an operand that is not f16, a grid beyond the device's limits.
 */
export function matmulTensorCoreVariant(device: SubgroupMatrixDevice, s: MatmulShape, shape?: MatrixShape): { variant?: MatmulTensorCoreVariant; reason?: string } {
  const unsupported = tensorCoreDeviceUnsupported(device) ?? productUnsupported(s);
  if (unsupported) return { reason: unsupported };
  const shapes = tensorCoreShapes(device);
  if (shape && !shapes.some((x) => x.M === shape.M && x.N === shape.N && x.K === shape.K))
    return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K} is not among this device's f16 -> f32 shapes (${shapes.map((x) => `M${x.M} N${x.N} K${x.K}`).join(', ')})` };
  const plan = planMatmulTensorCore(s.M, s.N, shape ?? shapes[0]!, tensorCoreDevice(device));
  if (!plan.variant) return plan;
  const grid = matmulTensorCoreGrid(s, plan.variant);
  if (grid.some((w) => w > device.limits.maxComputeWorkgroupsPerDimension)) return { reason: `grid ${grid} exceeds maxComputeWorkgroupsPerDimension` };
  return plan;
}

function matmulTensorCoreGrid(s: MatmulShape, v: MatmulTensorCoreVariant): [number, number, number] {
  const L = matmulTensorCoreLayout(v);
  return [ceilDiv(s.N, L.BN), ceilDiv(s.M, L.BM), s.batch];
}

/** The constants the .wgsl leaves as placeholders. */
function placeholders(v: MatmulTensorCoreVariant): Record<string, number> {
  const { bytes: _, ...L } = matmulTensorCoreLayout(v);
  return L;
}

function variantKey(v: MatmulTensorCoreVariant): string {
  return `M${v.shape.M}N${v.shape.N}K${v.shape.K} SG${v.subgroupSize} ${v.subgroupRows}x${v.subgroupCols} of ${v.matrixRows}x${v.matrixCols}`;
}

const kernels = new Map<string, Kernel>();

/** The variant's kernel, with or without the bias, the residual and the activation (matmul_shape.ts epilogueParts). */
export function matmulTensorCoreKernel(v: MatmulTensorCoreVariant, hasBias: boolean, hasResidual = false, activation?: Activation): Kernel {
  const key = `${variantKey(v)}${epilogueKey(hasBias, hasResidual, activation)}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const { includes, absent, constants } = epilogueParts(hasBias, hasResidual, activation);
    kernel = {
      name: 'matmulTensorCore',
      source: wgsl(import.meta.url, 'matmul_tensor_core.wgsl', {
        directives: TENSOR_CORE_DIRECTIVES,
        includes,
        placeholders: placeholders(v),
      }),
      inputs: MATMUL_INPUTS,
      outputs: ['c'],
      params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
      constants: ['TRANS_A', 'TRANS_B', ...constants],
      absent,
    };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** The H100's largest variant (M16 N16 K16, subgroups of 32), without and with a bias and residual; the no-GPU spec test reads their bindings. */
const SAMPLE_VARIANT: MatmulTensorCoreVariant = { shape: { M: 16, N: 16, K: 16 }, subgroupSize: 32, ...TILE_CANDIDATES[0]! };
export const matmulTensorCoreSampleKernel = matmulTensorCoreKernel(SAMPLE_VARIANT, false);
export const matmulTensorCoreBiasResidualSampleKernel = matmulTensorCoreKernel(SAMPLE_VARIANT, true, true);

/** The product s (f16 A and B) with variant v (matmulTensorCoreVariant's choice, or a test's). */
export function matmulTensorCoreCall(s: MatmulShape, v: MatmulTensorCoreVariant, op = 'matmulTensorCore'): KernelCall {
  const unsupported = productUnsupported(s);
  if (unsupported) throw new KernelError(`matmulTensorCore ${JSON.stringify(s)}: ${unsupported}`);
  return {
    // As the tiled kernel: 2·M·N·K FLOPs (+ M·N for the bias, and for the residual), f16 operands read once, C written once.
    ...matmulCost(s),
    kernel: matmulTensorCoreKernel(v, s.hasBias, s.hasResidual ?? false, s.activation),
    op,
    constants: { TRANS_A: Number(s.transA), TRANS_B: Number(s.transB), ...epilogueOf(s).constants },
    params: { M: s.M, N: s.N, K: s.K, strideA: s.strideA, strideB: s.strideB },
    workgroups: matmulTensorCoreGrid(s, v),
  };
}
