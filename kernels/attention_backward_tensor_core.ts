// Tensor-core variants of the attention backward (attention_backward_dkdv_tensor_core.wgsl and
// attention_backward_dq_tensor_core.wgsl): the products S = Q Kᵀ, dP = dO Vᵀ, dV += Pᵀ dO, dK += dSᵀ Q and
// dQ += dS K on subgroup matrices (f16 operands, f32 accumulators), P and dS in f32 scalar code, from f16 q, k, v,
// f32 dO (rounded to f16 when staged), the forward's lse and delta (attention_delta.wgsl). The f32 kernels
// (attention_backward_dkdv.wgsl, attention_backward_dq.wgsl) stay the reference and the fallback. What the two
// shaders share (constants, inputs, tiles, staging, the S and dP products) is attention_backward_tensor_core_tiles.wgsl.
//
// As the tensor-core forward, the matrix shape, subgroup size, head dim and tiles are placeholders (each
// combination its own shader) and the plan is a pure function of the device it is given.
import { ceilDiv, KernelError, wgsl, type Kernel, type KernelCall } from './spec.ts';
import { ATTENTION_INCLUDES, ATTENTION_PARAMS, keyRangeParts, maskParams, MAX_HEAD_DIM, tileWork, type AttentionDims, type AttentionMask } from './attention_forward.ts';
import {
  F16_PAD, F32_PAD, shapeUnusable, SLACK, TENSOR_CORE_DIRECTIVES, tensorCoreDevice, tensorCoreDeviceUnsupported, tensorCoreShapes,
  type MatrixShape, type SubgroupMatrixDevice, type TensorCoreDevice,
} from './attention_forward_tensor_core.ts';

/** dK and dV per key tile (looping over query tiles), or dQ per query tile (looping over key tiles). */
export type BackwardKind = 'dkdv' | 'dq';

/** Everything that makes one backward shader. */
export interface TensorCoreBackwardVariant {
  kind: BackwardKind;
  shape: MatrixShape;
  subgroupSize: number;
  /** Subgroups per workgroup, each owning shape.M rows of the tile the workgroup keeps: keys (dkdv) or query rows (dq). */
  subgroups: number;
  /** Rows of the tile the workgroup streams per step: query rows (dkdv) or keys (dq). */
  streamed: number;
  D: number;
}

/** The constants of one backward variant's shader and its workgroup memory; BR query rows and BC keys per tile pair. */
export function backwardLayout(v: TensorCoreBackwardVariant) {
  const { M: TM, N: TN, K: TK } = v.shape;
  const SG = v.subgroupSize, NSG = v.subgroups, WG = SG * NSG;
  const kept = NSG * TM;
  const BR = v.kind === 'dq' ? kept : v.streamed;
  const BC = v.kind === 'dq' ? v.streamed : kept;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const unit = (TN * TK) / gcd(TN, TK); // dims step by TK in S and dP, by TN in the gradients
  const DP = ceilDiv(v.D, unit) * unit;
  const ROW_STRIDE = DP + F16_PAD; // rows of head dims: Q, dO (and K for dQ) [rows][DP]
  const KT_STRIDE = BC + F16_PAD; // Kᵀ and Vᵀ [DP][BC]
  const S_STRIDE = BC + F32_PAD; // S, then dP [BR][BC] in f32
  const OUT_STRIDE = TN + F32_PAD; // one TM×TN block per subgroup and gradient on its way out
  const DS_STRIDE = (v.kind === 'dq' ? BC : BR) + F16_PAD; // dS [BR][BC] (dq), Pᵀ and dSᵀ [BC][BR] (dkdv)
  const Q_SIZE = BR * ROW_STRIDE + SLACK;
  const KT_SIZE = (v.kind === 'dq' ? Math.max(DP * KT_STRIDE, BC * ROW_STRIDE) : DP * KT_STRIDE) + SLACK;
  const gradients = v.kind === 'dq' ? 1 : 2; // dQ; dK and dV, each a kept × TN block per step on the way out
  const F_SIZE = Math.max(BR * S_STRIDE, gradients * kept * OUT_STRIDE) + SLACK;
  const DS_SIZE = (v.kind === 'dq' ? BR : BC) * DS_STRIDE + SLACK;
  // S blocks TM×TN of the BR×BC tile, shared among the subgroups; score entries per lane in the scalar phases.
  const BLOCKS_PER_SG = (BR / TM) * (BC / TN) / NSG;
  const SHARE = (BR * BC) / WG;
  const round16 = (bytes: number) => ceilDiv(bytes, 16) * 16;
  const dsTiles = v.kind === 'dq' ? 1 : 2; // dS (dq); Pᵀ and dSᵀ (dkdv)
  const bytes = 2 * round16(2 * Q_SIZE) + 2 * round16(2 * KT_SIZE) + round16(4 * F_SIZE) + dsTiles * round16(2 * DS_SIZE) + 2 * round16(4 * BR);
  return {
    SG, NSG, WG, TM, TN, TK, BR, BC, D: v.D, DP, ROW_STRIDE, KT_STRIDE, S_STRIDE, OUT_STRIDE, DS_STRIDE,
    Q_SIZE, KT_SIZE, F_SIZE, DS_SIZE, BLOCKS_PER_SG, SHARE, bytes,
  };
}

// Largest first: subgroups (the kept tile: subgroups · M rows), then the streamed tile.
const BACKWARD_TILE_CANDIDATES: readonly { subgroups: number; streamed: number }[] = [
  { subgroups: 4, streamed: 64 }, { subgroups: 4, streamed: 32 }, { subgroups: 4, streamed: 16 }, { subgroups: 2, streamed: 64 },
  { subgroups: 2, streamed: 32 }, { subgroups: 2, streamed: 16 }, { subgroups: 1, streamed: 32 }, { subgroups: 1, streamed: 16 },
];
/** Score entries (and so P values) a lane keeps in registers between the P and dS phases, at most. */
const MAX_SHARE = 64;

/** Why a layout cannot run (null: it can): every product steps whole matrices and every lane an equal share. */
function layoutUnusable(L: ReturnType<typeof backwardLayout>, device: TensorCoreDevice): string | null {
  const { TM, TN, TK, BR, BC, WG } = L;
  if (BR % TM !== 0 || BC % TN !== 0 || BC % TK !== 0 || BR % TK !== 0) return 'tiles not whole matrices';
  if (!Number.isInteger(L.BLOCKS_PER_SG) || (BR * BC) % WG !== 0 || L.SHARE > MAX_SHARE) return 'uneven shares';
  if (WG > device.maxInvocations) return `${WG} invocations`;
  if (L.bytes > device.maxWorkgroupBytes) return `${L.bytes} bytes`;
  return null;
}

/**
 * The variant of `kind` for head dim D: the largest tiles whose workgroup memory and invocations fit the device.
 * Pure, so that it can be checked without a GPU. D even and at most MAX_HEAD_DIM, as the forward.
 */
export function planBackwardTensorCore(kind: BackwardKind, D: number, shape: MatrixShape, device: TensorCoreDevice): { variant?: TensorCoreBackwardVariant; reason?: string } {
  if (!Number.isInteger(D) || D < 2 || D % 2 !== 0) return { reason: `head dim ${D} is not even (the kernel reads rows of f16 pairs)` };
  if (D > MAX_HEAD_DIM) return { reason: `head dim ${D} > ${MAX_HEAD_DIM}` };
  const unusable = shapeUnusable(shape, device.subgroupSize);
  if (unusable) return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K}: ${unusable}` };
  for (const t of BACKWARD_TILE_CANDIDATES) {
    const variant: TensorCoreBackwardVariant = { kind, shape, subgroupSize: device.subgroupSize, ...t, D };
    if (layoutUnusable(backwardLayout(variant), device) === null) return { variant };
  }
  return { reason: `no ${kind} tile at head dim ${D} fits ${device.maxWorkgroupBytes} bytes of workgroup memory and ${device.maxInvocations} invocations` };
}

/** Both backward variants for head dim D on this device (the largest matrix shape unless one is given), or the reason there are none. */
export function tensorCoreBackwardVariants(device: SubgroupMatrixDevice, D: number, shape?: MatrixShape): { dkdv?: TensorCoreBackwardVariant; dq?: TensorCoreBackwardVariant; reason?: string } {
  const unsupported = tensorCoreDeviceUnsupported(device);
  if (unsupported) return { reason: unsupported };
  const shapes = tensorCoreShapes(device);
  if (shape && !shapes.some((s) => s.M === shape.M && s.N === shape.N && s.K === shape.K))
    return { reason: `matrix shape M${shape.M} N${shape.N} K${shape.K} is not among this device's f16 -> f32 shapes (${shapes.map((s) => `M${s.M} N${s.N} K${s.K}`).join(', ')})` };
  const limits = tensorCoreDevice(device);
  const dkdv = planBackwardTensorCore('dkdv', D, shape ?? shapes[0]!, limits);
  const dq = planBackwardTensorCore('dq', D, shape ?? shapes[0]!, limits);
  if (!dkdv.variant || !dq.variant) return { reason: dkdv.reason ?? dq.reason };
  return { dkdv: dkdv.variant, dq: dq.variant };
}

const SOURCES: Record<BackwardKind, { file: string; name: string; outputs: string[] }> = {
  dkdv: { file: 'attention_backward_dkdv_tensor_core.wgsl', name: 'attentionBackwardDkDvTensorCore', outputs: ['dk', 'dv'] },
  dq: { file: 'attention_backward_dq_tensor_core.wgsl', name: 'attentionBackwardDqTensorCore', outputs: ['dq'] },
};

const kernels = new Map<string, Kernel>();

/** The variant's kernel, with the keyRange input (padding) or without it. */
export function attentionBackwardTensorCoreKernel(v: TensorCoreBackwardVariant, hasKeyRange: boolean): Kernel {
  const key = `${v.kind} M${v.shape.M}N${v.shape.N}K${v.shape.K} SG${v.subgroupSize} x${v.subgroups} ${v.streamed} D${v.D}${hasKeyRange ? ' keyRange' : ''}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const { file, name, outputs } = SOURCES[v.kind];
    const inputs = ['q', 'k', 'v', 'dout', 'lse', 'delta', 'keyRange'];
    const keyRange = keyRangeParts(inputs, hasKeyRange);
    const { bytes: _bytes, ...constants } = backwardLayout(v);
    kernel = {
      name,
      source: wgsl(import.meta.url, file, {
        directives: TENSOR_CORE_DIRECTIVES,
        includes: [...ATTENTION_INCLUDES, ...keyRange.includes, 'attention_backward_tensor_core_tiles.wgsl'],
        placeholders: { ...constants, ...keyRange.placeholders },
      }),
      inputs,
      outputs,
      params: ATTENTION_PARAMS,
      absent: keyRange.absent,
    };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** The H100's variants at head dim 64 (M16 N16 K16, subgroups of 32); the no-GPU spec test reads their bindings. */
const H100: TensorCoreDevice = { subgroupSize: 32, maxWorkgroupBytes: 49152, maxInvocations: 1024 };
export const attentionBackwardDkDvTensorCoreSampleKernel = attentionBackwardTensorCoreKernel(planBackwardTensorCore('dkdv', 64, { M: 16, N: 16, K: 16 }, H100).variant!, false);
export const attentionBackwardDqTensorCoreKeyRangeSampleKernel = attentionBackwardTensorCoreKernel(planBackwardTensorCore('dq', 64, { M: 16, N: 16, K: 16 }, H100).variant!, true);

export function attentionBackwardTensorCoreCall(dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreBackwardVariant): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  if (v.D !== D) throw new KernelError(`${SOURCES[v.kind].name}: variant for head dim ${v.D} called at head dim ${D}`);
  const L = backwardLayout(v);
  const work = tileWork(T, S, L.BR, L.BC, mask);
  const kernel = attentionBackwardTensorCoreKernel(v, mask.hasKeyRange);
  const params = { T, S, H, KVH, scale, ...maskParams(mask) };
  // As the f32 kernels (2·D per computed entry and product), with f16 q, k, v and f32 dO, lse, delta.
  if (v.kind === 'dkdv') {
    return {
      kernel, params, workgroups: [ceilDiv(S, L.BC), KVH, B],
      cost: { flops: 8 * D * B * H * work.entries, bytesRead: 4 * B * KVH * S * D + 2 * B * H * work.rowsLoaded * (3 * D + 4), bytesWritten: 8 * B * KVH * S * D },
    };
  }
  return {
    kernel, params, workgroups: [ceilDiv(T, L.BR), H, B],
    cost: { flops: 6 * D * B * H * work.entries, bytesRead: 2 * B * H * T * (3 * D + 4) + 6 * B * H * work.keysLoaded * D, bytesWritten: 4 * B * H * T * D },
  };
}
