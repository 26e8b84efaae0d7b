// Tensor-core variant of the fused attention forward (attention_forward_tensor_core.wgsl): Q Kᵀ and P V on
// subgroup matrices (chromium-experimental-subgroup-matrix, f16 operands, f32 accumulators), the softmax in f32
// scalar code, f16 inputs. The f32 kernel (attention_forward.wgsl) stays the reference and the fallback.
//
// The matrix types take no override constant, so the matrix shape, subgroup size, head dim and tiles are
// placeholders of the WGSL (its matrix types and `const` declarations): each combination is its own shader, built
// once and cached. Nothing here reads a device: what the plan needs of one is an argument (SubgroupMatrixDevice).
import { ceilDiv, KernelError, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import { ATTENTION_INCLUDES, ATTENTION_PARAMS, keyRangeParts, maskParams, MAX_HEAD_DIM, tileWork, type AttentionDims, type AttentionMask } from './attention_forward.ts';

/** One f16 × f16 → f32 shape of the device's tensor cores: left M×K, right K×N, result M×N. */
export interface MatrixShape { M: number; N: number; K: number }

/** Everything that makes one shader. */
export interface TensorCoreVariant {
  shape: MatrixShape;
  /** Lanes per subgroup: the device's one subgroup size. */
  subgroupSize: number;
  /** Subgroups per workgroup, each owning shape.M query rows. */
  subgroups: number;
  /** Keys per tile. */
  BC: number;
  D: number;
}

/** What limits a variant: the device's subgroup size and workgroup limits. */
export interface TensorCoreDevice { subgroupSize: number; maxWorkgroupBytes: number; maxInvocations: number }

/** A shape the tensor cores take (Dawn's adapter info lists them under chromium-experimental-subgroup-matrix). */
export interface SubgroupMatrixConfig { componentType: string; resultComponentType: string; M: number; N: number; K: number }

/** What the tensor-core kernel needs to know of a device: features, subgroup sizes, matrix configs, limits. */
export interface SubgroupMatrixDevice {
  features: ReadonlySet<string>;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  limits: DeviceLimits;
}

// Row padding of the tiles: 8 halves (16 bytes) and 4 floats keep each row 16-byte aligned, as Vulkan's
// cooperative-matrix loads and stores require of their pointer and stride, and shift successive rows across the
// memory banks.
export const F16_PAD = 8;
export const F32_PAD = 4;
// Spare elements after each tile that the matrices touch, in case bounds predication counts whole strides.
export const SLACK = 8;
/** Output accumulators per lane at most (the head dims a lane holds: DP / LPR). */
const MAX_LANE_DIMS = 128;

/** The constants of one variant's shader and its workgroup memory. */
export function tensorCoreLayout(v: TensorCoreVariant) {
  const { M: TM, N: TN, K: TK } = v.shape;
  const SG = v.subgroupSize, NSG = v.subgroups, BC = v.BC;
  const WG = SG * NSG, BR = NSG * TM;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const unit = (TN * TK) / gcd(TN, TK); // dims step by TK in Q Kᵀ and by TN in P V
  const DP = ceilDiv(v.D, unit) * unit;
  const LPR = WG / BR;
  const Q_STRIDE = DP + F16_PAD, V_STRIDE = DP + F16_PAD, P_STRIDE = BC + F16_PAD;
  const K_STRIDE = BC + F16_PAD; // the key tile is stored transposed, Kᵀ [DP][BC], and read row-major
  const S_STRIDE = BC + F32_PAD, O_STRIDE = DP + F32_PAD;
  const Q_SIZE = BR * Q_STRIDE + SLACK;
  const KV_SIZE = Math.max(BC * V_STRIDE, DP * K_STRIDE) + SLACK;
  const P_SIZE = BR * P_STRIDE + SLACK;
  const F_SIZE = BR * Math.max(S_STRIDE, O_STRIDE) + SLACK;
  const round16 = (bytes: number) => ceilDiv(bytes, 16) * 16;
  const bytes = round16(2 * Q_SIZE) + round16(2 * KV_SIZE) + round16(2 * P_SIZE) + round16(4 * F_SIZE) + 2 * round16(4 * WG);
  return { SG, NSG, WG, TM, TN, TK, BR, BC, D: v.D, DP, LPR, Q_STRIDE, K_STRIDE, V_STRIDE, P_STRIDE, S_STRIDE, O_STRIDE, Q_SIZE, KV_SIZE, P_SIZE, F_SIZE, bytes };
}

/** Why a matrix shape cannot serve a subgroup of this size (null: it can). */
export function shapeUnusable(shape: MatrixShape, subgroupSize: number): string | null {
  if (subgroupSize % shape.M !== 0) return `M${shape.M} does not divide the subgroup size ${subgroupSize}`;
  if (shape.N % 8 !== 0 || shape.K % 8 !== 0) return `N${shape.N} K${shape.K}: rows of 16 bytes (8 halves) are needed`;
  return null;
}

// Largest first: subgroups per workgroup (query rows BR = subgroups · M), then keys per tile.
const TILE_CANDIDATES: readonly { subgroups: number; BC: number }[] = [
  { subgroups: 4, BC: 64 }, { subgroups: 4, BC: 32 }, { subgroups: 2, BC: 64 }, { subgroups: 2, BC: 32 }, { subgroups: 1, BC: 64 }, { subgroups: 1, BC: 32 },
];

/**
 * The variant for head dim D: the largest tile whose workgroup memory and invocations fit the device. Pure (the
 * device is given), so that it can be checked without a GPU. D must be even (rows of whole words) and at most
 * MAX_HEAD_DIM; it need not be a multiple of the matrix shape (the tiles pad it with zeros).
 */
export function planTensorCore(D: number, shape: MatrixShape, device: TensorCoreDevice): { variant?: TensorCoreVariant; reason?: string } {
  if (!Number.isInteger(D) || D < 2 || D % 2 !== 0) return { reason: `head dim ${D} is not even (the kernel reads rows of f16 pairs)` };
  if (D > MAX_HEAD_DIM) return { reason: `head dim ${D} > ${MAX_HEAD_DIM}` };
  const unusable = shapeUnusable(shape, device.subgroupSize);
  if (unusable) return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K}: ${unusable}` };
  for (const t of TILE_CANDIDATES) {
    const variant: TensorCoreVariant = { shape, subgroupSize: device.subgroupSize, subgroups: t.subgroups, BC: t.BC, D };
    const L = tensorCoreLayout(variant);
    if (L.BC % L.TN !== 0 || L.BC % L.TK !== 0 || L.BC % L.LPR !== 0 || L.DP % L.LPR !== 0) continue;
    if (L.WG > device.maxInvocations || L.DP / L.LPR > MAX_LANE_DIMS) continue;
    if (L.bytes <= device.maxWorkgroupBytes) return { variant };
  }
  return { reason: `no tile at head dim ${D} fits ${device.maxWorkgroupBytes} bytes of workgroup memory and ${device.maxInvocations} invocations` };
}

/** The device's f16 × f16 → f32 subgroup-matrix shapes that fit its subgroup, largest first. */
export function tensorCoreShapes(device: SubgroupMatrixDevice): MatrixShape[] {
  const shapes = device.subgroupMatrixConfigs
    .filter((c) => c.componentType.toLowerCase() === 'f16' && c.resultComponentType.toLowerCase() === 'f32')
    .map((c) => ({ M: c.M, N: c.N, K: c.K }))
    .filter((s) => shapeUnusable(s, device.subgroupMaxSize) === null);
  return shapes.sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K || b.N - a.N);
}

/** Why this device cannot run the tensor-core forward at all (null: it can, at some head dims). */
export function tensorCoreDeviceUnsupported(device: SubgroupMatrixDevice): string | null {
  const { features } = device;
  if (!features.has('chromium-experimental-subgroup-matrix'))
    return "the device lacks 'chromium-experimental-subgroup-matrix' (Dawn exposes it with enable-dawn-features=allow_unsafe_apis; NVIDIA needs vulkan_enable_f16_on_nvidia too)";
  if (!features.has('shader-f16')) return "the device lacks 'shader-f16'";
  const { subgroupMinSize: min, subgroupMaxSize: max } = device;
  if (min !== max || max === 0) return `the subgroup size is not fixed (${min}..${max}): the tensor-core kernels take subgroup lid / SG to be one subgroup`;
  if (tensorCoreShapes(device).length === 0) {
    const configs = device.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} M${c.M} N${c.N} K${c.K}`).join(', ');
    return `no f16 x f16 -> f32 subgroup-matrix config fits a subgroup of ${max} (configs: ${configs || 'none'})`;
  }
  return null;
}

/** The limits planTensorCore reads, from a device. */
export function tensorCoreDevice(device: SubgroupMatrixDevice): TensorCoreDevice {
  const { limits } = device;
  return {
    subgroupSize: device.subgroupMaxSize,
    maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize,
    maxInvocations: Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX),
  };
}

/** The variant for head dim D on this device (the largest matrix shape unless one is given), or the reason there is none. */
export function tensorCoreVariant(device: SubgroupMatrixDevice, D: number, shape?: MatrixShape): { variant?: TensorCoreVariant; reason?: string } {
  const unsupported = tensorCoreDeviceUnsupported(device);
  if (unsupported) return { reason: unsupported };
  const shapes = tensorCoreShapes(device);
  if (shape && !shapes.some((s) => s.M === shape.M && s.N === shape.N && s.K === shape.K))
    return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K} is not among this device's f16 -> f32 shapes (${shapes.map((s) => `M${s.M} N${s.N} K${s.K}`).join(', ')})` };
  return planTensorCore(D, shape ?? shapes[0]!, tensorCoreDevice(device));
}

/** The directives, matrix types and constants the .wgsl leaves as placeholders. */
function placeholders(v: TensorCoreVariant): Record<string, number> {
  const L = tensorCoreLayout(v);
  return {
    SG: L.SG, NSG: L.NSG, WG: L.WG, TM: L.TM, TN: L.TN, TK: L.TK, BR: L.BR, BC: L.BC, D: L.D, DP: L.DP, LPR: L.LPR,
    Q_STRIDE: L.Q_STRIDE, K_STRIDE: L.K_STRIDE, V_STRIDE: L.V_STRIDE, P_STRIDE: L.P_STRIDE, S_STRIDE: L.S_STRIDE,
    O_STRIDE: L.O_STRIDE, Q_SIZE: L.Q_SIZE, KV_SIZE: L.KV_SIZE, P_SIZE: L.P_SIZE, F_SIZE: L.F_SIZE,
  };
}

/** WGSL directives of the tensor-core shader (the test-only emulation in test/support removes the matrix ones). */
export const TENSOR_CORE_DIRECTIVES = [
  'enable f16;',
  'enable chromium_experimental_subgroup_matrix;',
  // Offsets derive from the lane's subgroup (lid / SG), which the analysis cannot see is subgroup-uniform.
  'diagnostic(off, chromium.subgroup_matrix_uniformity);',
] as const;

function variantKey(v: TensorCoreVariant): string {
  return `M${v.shape.M}N${v.shape.N}K${v.shape.K} SG${v.subgroupSize} x${v.subgroups} BC${v.BC} D${v.D}`;
}

const kernels = new Map<string, Kernel>();

/** The variant's kernel, with the keyRange input (padding) or without it. */
export function attentionTensorCoreKernel(v: TensorCoreVariant, hasKeyRange: boolean): Kernel {
  const key = `${variantKey(v)}${hasKeyRange ? ' keyRange' : ''}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const inputs = ['q', 'k', 'v', 'keyRange'];
    const keyRange = keyRangeParts(inputs, hasKeyRange);
    kernel = {
      name: 'attentionForwardTensorCore',
      source: wgsl(import.meta.url, 'attention_forward_tensor_core.wgsl', {
        directives: TENSOR_CORE_DIRECTIVES,
        includes: [...ATTENTION_INCLUDES, ...keyRange.includes],
        placeholders: { ...placeholders(v), ...keyRange.placeholders },
      }),
      inputs,
      outputs: ['out', 'lse'],
      params: ATTENTION_PARAMS,
      absent: keyRange.absent,
    };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** The H100's variant at head dim 64 (M16 N16 K16, subgroups of 32), without and with keyRange; the no-GPU spec test reads their bindings. */
const SAMPLE_VARIANT: TensorCoreVariant = { shape: { M: 16, N: 16, K: 16 }, subgroupSize: 32, subgroups: 4, BC: 64, D: 64 };
export const attentionTensorCoreSampleKernel = attentionTensorCoreKernel(SAMPLE_VARIANT, false);
export const attentionTensorCoreKeyRangeSampleKernel = attentionTensorCoreKernel(SAMPLE_VARIANT, true);

export function attentionTensorCoreCall(dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreVariant): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  if (v.D !== D) throw new KernelError(`attentionForwardTensorCore: variant for head dim ${v.D} called at head dim ${D}`);
  const L = tensorCoreLayout(v);
  const work = tileWork(T, S, L.BR, L.BC, mask);
  return {
    kernel: attentionTensorCoreKernel(v, mask.hasKeyRange),
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: [ceilDiv(T, L.BR), H, B],
    // As the f32 kernel: Q Kᵀ and P V, 2·D each per computed entry (head dims, not the padded ones); f16 reads.
    cost: {
      flops: 4 * D * B * H * work.entries,
      bytesRead: 2 * D * B * H * (T + 2 * work.keysLoaded),
      bytesWritten: 4 * B * H * T * (D + 1),
    },
  };
}
