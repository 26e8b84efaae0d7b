// Fused attention: out = softmax(Q Kᵀ·scale + mask) V with FlashAttention-2 kernels (no T×S buffer), its
// backward on the tape, f16-storage inference and KV-cache decode.
//
// Shapes: q [B, H, T, D], k and v [B, KVH, S, D]; query head h reads kv head floor(h / (H / KVH)).
// f16 storage (attentionWithLse and attentionDecode, where the device has shader-f16): q, k and v are u32
// tensors [B, heads, length, D / 2] holding two f16 values per word, or f16 tensors [B, heads, length, D] (the
// same bytes); the kernels convert on load and compute in f32.
// Tensor cores (attentionTensorCore, or attentionWithLse with variant 'tensorCore' or 'auto'): the same forward
// on f16 storage with Q Kᵀ and P V as subgroup matrices (f16 operands, f32 accumulation; P rounded to f16), where
// the device has chromium-experimental-subgroup-matrix with an f16 -> f32 shape; its backward
// (attentionTensorCoreBackward) likewise, dK/dV and dQ with all five products on subgroup matrices. The f32
// kernels stay the reference and the fallback. Under mixed precision (autocast, engine/ops/cast.ts) the taped
// attention() runs both on the tensor cores where they serve (attentionKernels says which kernels and why).
// Mask (kernels/attention_visibility.wgsl): query row t has position t + positionOffset, key j position j;
// query sees key j iff keyRange[b][0] <= j < keyRange[b][1] (padding, left or right), and with causal
// j <= position, and with window W (implies causal) position - j < W. A row that sees no key gets out 0,
// lse -inf and zero gradients.
//
// Ledger: the kernels charge the FLOPs they compute (Q Kᵀ, P V and the backward's products over the tiles
// they do not skip, masked entries inside them included); attentionUsefulFlops() gives the FLOPs of the
// visible entries alone (4·D each forward, 10·D backward, the FlashAttention convention), so that
// useful / charged is the efficiency of tile skipping. Padding is applied on the GPU, so both counts
// assume every key valid.
import { autocastF16, record, type Grad } from '../autodiff.ts';
import { gpu, GpuError, subgroupDevice } from '../gpu.ts';
import { byDevice, deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { castF16 } from './cast.ts';
import { KernelError, type DeviceLimits, type Kernel, type KernelCall } from '../../kernels/spec.ts';
import {
  checkStorageBindings, MAX_HEAD_DIM, visibleKeySpan, type AttentionDims, type AttentionMask, type AttentionTiles,
} from '../../kernels/attention_forward.ts';
import { chosenForwardCall, forwardChoice } from '../../kernels/attention_forward_rows.ts';
import { chosenDqCall, dqChoice } from '../../kernels/attention_backward_dq_rows.ts';
import { chosenDkDvCall, dkdvChoice } from '../../kernels/attention_backward_dkdv_rows.ts';
import { attentionDeltaCall } from '../../kernels/attention_delta.ts';
import { attentionDecodeCall, attentionDecodeReduceCall, decodeChunks, DECODE_CHUNK, DECODE_VARIANTS, type DecodeVariant } from '../../kernels/attention_decode.ts';
import {
  attentionTensorCoreCall, tensorCoreLayout, tensorCoreVariant, type MatrixShape, type SubgroupMatrixDevice, type TensorCoreVariant,
} from '../../kernels/attention_forward_tensor_core.ts';
import {
  attentionBackwardTensorCoreCall, attentionBackwardTensorCoreKernel, backwardLayout, tensorCoreBackwardVariants, type TensorCoreBackwardVariant,
} from '../../kernels/attention_backward_tensor_core.ts';
import { deviceClassOf, MATMUL_DEVICE_CLASSES, type MatmulDeviceClass } from '../../kernels/matmul.ts';

export interface AttentionOptions {
  causal?: boolean;
  /** Sliding window W: a query sees the W most recent keys up to its own position (implies causal). */
  window?: number;
  /** Scale of the scores; 1/sqrt(D) by default. */
  scale?: number;
  /** i32 [B, 2]: batch row b sees only keys [keyRange[b][0], keyRange[b][1]) (left or right padding). */
  keyRange?: Tensor;
  /** Position of query row 0 (keys are at 0..S-1): queries p..p+T-1 attending a cache of S = p + T keys. */
  positionOffset?: number;
}

/** Checks shapes and options and states them as the kernels see them. */
export function attentionSetup(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, storage: 'f32' | 'f16') {
  const what = `attention(q ${shapeString(q.shape)}, k ${shapeString(k.shape)}, v ${shapeString(v.shape)})`;
  const dtypes = storage === 'f32' ? ['f32'] : ['u32', 'f16'];
  if (storage === 'f16' && !gpu().features.has('shader-f16')) throw new GpuError(`${what}: f16 storage needs the device feature 'shader-f16'`);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw new GpuError(`${what}: q, k and v must be rank 4 ([B, heads, length, D])`);
  for (const t of [q, k, v]) if (!dtypes.includes(t.dtype) || t.dtype !== q.dtype) throw new GpuError(`${what}: ${storage} storage needs ${dtypes.join(' or ')} tensors, all alike; got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  const [B, H, T, lastQ] = q.shape;
  const [Bk, KVH, S, lastK] = k.shape;
  // f16 storage in u32 tensors packs two halves per word: the last dim holds D / 2 words.
  const D = q.dtype === 'u32' ? 2 * lastQ : lastQ;
  if (Bk !== B || lastK !== lastQ || v.shape.some((d, i) => d !== k.shape[i])) throw new GpuError(`${what}: k and v must be [B, KVH, S, D] with q's B and D`);
  if (KVH === 0 || H % KVH !== 0) throw new GpuError(`${what}: query heads ${H} must be a multiple of kv heads ${KVH}`);
  if (D > MAX_HEAD_DIM) throw new GpuError(`${what}: head dim ${D} > ${MAX_HEAD_DIM} is not supported`);
  const window = opts.window ?? 0;
  const positionOffset = opts.positionOffset ?? 0;
  if (!Number.isInteger(window) || window < 0 || !Number.isInteger(positionOffset) || positionOffset < 0)
    throw new GpuError(`${what}: window (${window}) and positionOffset (${positionOffset}) must be non-negative integers`);
  if (window > 0 && opts.causal === false) throw new GpuError(`${what}: a sliding window implies causal; do not pass causal: false`);
  const keyRange = opts.keyRange;
  if (keyRange && (keyRange.dtype !== 'i32' || keyRange.numel !== 2 * B)) throw new GpuError(`${what}: keyRange must be i32 [B, 2], got ${keyRange.dtype} ${shapeString(keyRange.shape)}`);
  const dims: AttentionDims = { B, H, KVH, T, S, D };
  const mask: AttentionMask = { causal: opts.causal ?? false, window, positionOffset, hasKeyRange: keyRange !== undefined };
  // Without padding the kernels' variant leaves the keyRange binding out: null in its place.
  return { dims, mask, scale: opts.scale ?? 1 / Math.sqrt(D), keyRange: keyRange ?? null };
}

type AttentionSetup = ReturnType<typeof attentionSetup>;

/** out [B, H, T, D] and lse [B, H, T] (natural-log logsumexp of each row's scaled visible scores) of one forward call. */
function forwardInto(call: KernelCall, q: Tensor, k: Tensor, v: Tensor, { dims, keyRange }: AttentionSetup): { out: Tensor; lse: Tensor } {
  const out = Tensor.empty([dims.B, dims.H, dims.T, dims.D], 'f32', 'attention out');
  const lse = Tensor.empty([dims.B, dims.H, dims.T], 'f32', 'attention lse');
  launch(call, [q, k, v, keyRange], [out, lse]);
  return { out, lse };
}

/**
 * The f32-arithmetic forward on f32 or f16 storage (the setup's): the device class's choice (forwardChoice in
 * kernels/attention_forward_rows.ts: on lavapipe the rows kernel where it fits, else the tiled one; the backward's
 * dQ and dK/dV likewise, dqChoice and dkdvChoice).
 */
function attentionForward(q: Tensor, k: Tensor, v: Tensor, setup: AttentionSetup, storage: 'f32' | 'f16'): { out: Tensor; lse: Tensor } {
  return forwardInto(chosenForwardCall(deviceLimits(), subgroupDevice(), setup.dims, setup.mask, setup.scale, storage, attentionDeviceClass()), q, k, v, setup);
}

/**
 * Fused attention of f32 q, k, v with its backward on the tape. Under mixed precision (autocast) where the tensor
 * cores serve this head dim and mask (attentionKernels), on them: q, k, v cast to f16 (castF16, whose gradients
 * pass through in f32), the tensor-core forward and backward (saved: the f16 copies, out, lse and keyRange).
 * Otherwise the f32 kernels (saved: q, k, v, out, lse and keyRange).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const setup = attentionSetup(q, k, v, opts, 'f32');
  const variants = autocastF16() ? trainingTensorCores(setup.dims.D, setup.mask.hasKeyRange).variants : undefined;
  if (variants) return tensorCoreAttention(q, k, v, setup, variants);
  const { out, lse } = attentionForward(q, k, v, setup, 'f32');
  const saved = [q, k, v, out, lse, ...(opts.keyRange ? [opts.keyRange] : [])];
  record('attention', [q, k, v], [out], saved, ([g]) => attentionBackward(g!, q, k, v, out, lse, opts));
  lse.dispose(); // the tape holds it when it recorded
  return out;
}

/** Gradients of q, k and v from dout; P is recomputed from q, k and the forward's lse. */
function attentionBackward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts: AttentionOptions): Grad[] {
  const { dims, mask, scale, keyRange } = attentionSetup(q, k, v, opts, 'f32');
  const delta = attentionDelta(dout, out, dims);
  const inputs = [q, k, v, dout, lse, delta, keyRange];
  let dq: Tensor | null = null, dk: Tensor | null = null, dv: Tensor | null = null;
  if (k.requiresGrad || v.requiresGrad) {
    dk = Tensor.empty(k.shape, 'f32', 'attention dk');
    dv = Tensor.empty(v.shape, 'f32', 'attention dv');
    launch(chosenDkDvCall(deviceLimits(), subgroupDevice(), dims, mask, scale, attentionDeviceClass()), inputs, [dk, dv]);
  }
  if (q.requiresGrad) {
    dq = Tensor.empty(q.shape, 'f32', 'attention dq');
    launch(chosenDqCall(deviceLimits(), subgroupDevice(), dims, mask, scale, attentionDeviceClass()), inputs, [dq]);
  }
  return [dq, dk, dv];
}

/** delta = rowsum(dO ∘ O) [B, H, T], which both backward kernels read. */
function attentionDelta(dout: Tensor, out: Tensor, dims: AttentionDims): Tensor {
  const delta = Tensor.empty([dims.B, dims.H, dims.T], 'f32', 'attention delta');
  launch(attentionDeltaCall(deviceLimits(), dims.B * dims.H * dims.T, dims.D), [dout, out], [delta]);
  return delta;
}

/** u32 q, k, v hold f16 pairs, f16 ones f16 values (see the header). */
function storageOf(q: Tensor): 'f32' | 'f16' { return q.dtype === 'u32' || q.dtype === 'f16' ? 'f16' : 'f32'; }

/**
 * Which forward kernel: 'f32' the f32-arithmetic kernel (the reference; it reads f32 or f16 storage), 'tensorCore'
 * (f16 storage only; throws where the device cannot), 'auto' the tensor cores where they can serve this call, else 'f32'.
 */
export type ForwardVariant = 'f32' | 'tensorCore' | 'auto';

/** The tensor-core kernel's choice: the matrix shape (the device's largest f16 -> f32 one by default). */
export interface TensorCoreOptions { shape?: MatrixShape }

export interface ForwardOptions extends AttentionOptions, TensorCoreOptions { variant?: ForwardVariant }

/** Forward with the row logsumexp, no tape; f32 or f16 storage (see the header); the f32 kernel unless opts.variant says otherwise. */
export function attentionWithLse(q: Tensor, k: Tensor, v: Tensor, opts: ForwardOptions = {}): { out: Tensor; lse: Tensor } {
  const storage = storageOf(q);
  const variant = opts.variant ?? 'f32';
  if (variant === 'tensorCore') return attentionTensorCore(q, k, v, opts);
  if (variant === 'auto' && storage === 'f16') {
    const D = q.dtype === 'u32' ? 2 * q.shape[q.rank - 1]! : q.shape[q.rank - 1]!;
    if (tensorCoreFor(D, opts).variant) return attentionTensorCore(q, k, v, opts);
  }
  return attentionForward(q, k, v, attentionSetup(q, k, v, opts, storage), storage);
}

/**
 * What the tensor-core kernels run on: a description of the device (features, subgroup sizes, matrix configs,
 * limits), which their plans read, and the calls that launch them. The device's own unless withTensorCores says
 * otherwise.
 */
export interface TensorCores {
  device: () => SubgroupMatrixDevice;
  forwardCall: (dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreVariant) => KernelCall;
  backwardCall: (dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreBackwardVariant) => KernelCall;
}

let tensorCores: TensorCores = { device: subgroupMatrixDevice, forwardCall: attentionTensorCoreCall, backwardCall: attentionBackwardTensorCoreCall };

/**
 * Runs fn (awaited) with the attention's tensor-core paths on `cores` instead of the device's own: emulated subgroup
 * matrices (test/support/subgroup_matrix_emulation.ts) run them end to end on a device without any.
 */
export async function withTensorCores<T>(cores: TensorCores, fn: () => T | Promise<T>): Promise<T> {
  const outer = tensorCores;
  tensorCores = cores;
  try { return await fn(); } finally { tensorCores = outer; }
}

/** The tensor-core variant for head dim D, or the reason there is none. */
function tensorCoreFor(D: number, opts: TensorCoreOptions) {
  return tensorCoreVariant(tensorCores.device(), D, opts.shape);
}

/** Both backward variants for head dim D whose kernels the device can bind (with keyRange or without), or the reason there are none. */
function tensorCoreBackwardFor(D: number, hasKeyRange: boolean, opts: TensorCoreOptions): { dkdv?: TensorCoreBackwardVariant; dq?: TensorCoreBackwardVariant; reason?: string } {
  const device = tensorCores.device();
  const plan = tensorCoreBackwardVariants(device, D, opts.shape);
  if (!plan.dkdv || !plan.dq) return { reason: plan.reason };
  // With padding dK/dV binds 9 storage buffers, one past WebGPU's default of 8.
  for (const v of [plan.dkdv, plan.dq]) {
    const refused = bindingRefusal(device.limits, attentionBackwardTensorCoreKernel(v, hasKeyRange));
    if (refused) return { reason: refused };
  }
  return plan;
}

/** Why a device of these limits cannot bind the kernel's storage buffers (null: it can). */
function bindingRefusal(limits: DeviceLimits, kernel: Kernel): string | null {
  try {
    checkStorageBindings(limits, kernel);
    return null;
  } catch (e) {
    if (e instanceof KernelError) return e.message;
    throw e;
  }
}

/** The tensor-core kernels of the taped attention: forward, dK/dV and dQ. */
interface TrainingVariants { forward: TensorCoreVariant; dkdv: TensorCoreBackwardVariant; dq: TensorCoreBackwardVariant }

/** The taped attention's tensor-core variants at head dim D (the device's largest matrix shape), or why there are none. */
function trainingTensorCores(D: number, hasKeyRange: boolean): { variants?: TrainingVariants; reason?: string } {
  const forward = tensorCoreFor(D, {});
  if (!forward.variant) return { reason: forward.reason };
  const { dkdv, dq, reason } = tensorCoreBackwardFor(D, hasKeyRange, {});
  if (!dkdv || !dq) return { reason };
  return { variants: { forward: forward.variant, dkdv, dq } };
}

/** attention() on the tensor cores: f16 copies of q, k, v on the tape; the backward runs on the forward's cores. */
function tensorCoreAttention(q: Tensor, k: Tensor, v: Tensor, setup: AttentionSetup, variants: TrainingVariants): Tensor {
  const cores = tensorCores;
  const [q16, k16, v16] = [castF16(q), castF16(k), castF16(v)];
  const { dims, mask, scale, keyRange } = setup;
  const { out, lse } = forwardInto(cores.forwardCall(dims, mask, scale, variants.forward), q16, k16, v16, setup);
  const saved = [q16, k16, v16, out, lse, ...(keyRange ? [keyRange] : [])];
  record('attention', [q16, k16, v16], [out], saved, ([g]) => {
    const { dq, dk, dv } = tensorCoreBackward(cores, variants, g!, q16, k16, v16, out, lse, setup);
    return [dq, dk, dv];
  });
  for (const t of [q16, k16, v16, lse]) t.dispose(); // the tape holds them when it recorded
  return out;
}

/** dq, dk, dv (f32) of the tensor-core backward variants on `cores`, from f32 dout and the forward's f16 q, k, v, out and lse. */
function tensorCoreBackward(cores: TensorCores, variants: Pick<TrainingVariants, 'dkdv' | 'dq'>, dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
  { dims, mask, scale, keyRange }: AttentionSetup): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const delta = attentionDelta(dout, out, dims);
  const inputs = [q, k, v, dout, lse, delta, keyRange];
  const dk = Tensor.empty([dims.B, dims.KVH, dims.S, dims.D], 'f32', 'attention dk');
  const dv = Tensor.empty([dims.B, dims.KVH, dims.S, dims.D], 'f32', 'attention dv');
  launch(cores.backwardCall(dims, mask, scale, variants.dkdv), inputs, [dk, dv]);
  const dq = Tensor.empty([dims.B, dims.H, dims.T, dims.D], 'f32', 'attention dq');
  launch(cores.backwardCall(dims, mask, scale, variants.dq), inputs, [dq]);
  delta.dispose();
  return { dq, dk, dv };
}

/**
 * Which kernels the taped attention() runs at head dim D (with padding, keyRange, or without): 'tensorCore' under
 * mixed precision where the tensor cores serve, else 'f32' (with the reason the tensor cores do not), and their
 * tiles, BR query rows by BC keys, which decide the score entries computed (the audit's AttentionPlan; the rows kernels
 * on lavapipe also give the blocks of their last products: BCV keys for P V and dS K, BRV rows for dV and dK).
 */
export function attentionKernels(D: number, o: { mixedPrecision: boolean; hasKeyRange?: boolean }): { kernels: 'tensorCore' | 'f32'; reason?: string; forward: AttentionTiles; dkdv: AttentionTiles; dq: AttentionTiles } {
  const { variants, reason } = o.mixedPrecision ? trainingTensorCores(D, o.hasKeyRange ?? false) : { reason: 'not under mixed precision (autocast)' };
  if (variants) {
    const tiles = (L: { BR: number; BC: number }) => ({ BR: L.BR, BC: L.BC });
    return { kernels: 'tensorCore', forward: tiles(tensorCoreLayout(variants.forward)), dkdv: tiles(backwardLayout(variants.dkdv)), dq: tiles(backwardLayout(variants.dq)) };
  }
  const limits = deviceLimits(), device = attentionDeviceClass();
  return { kernels: 'f32', reason, forward: forwardChoice(limits, subgroupDevice(), D, device).tiles, dkdv: dkdvChoice(limits, subgroupDevice(), D, device).tiles, dq: dqChoice(limits, subgroupDevice(), D, device).tiles };
}

/**
 * Which row of kernels/attention_tiles.json the f32 kernels' tiles come from: the device's class (lavapipe, nvidia,
 * other, as matmul's); JUICE_ATTENTION_CLASS=lavapipe|nvidia|other reads another's (benchmarks compare plans with it).
 */
export function attentionDeviceClass(): MatmulDeviceClass {
  const forced = process.env.JUICE_ATTENTION_CLASS as MatmulDeviceClass | undefined;
  if (forced !== undefined && !MATMUL_DEVICE_CLASSES.includes(forced)) throw new GpuError(`JUICE_ATTENTION_CLASS=${forced}: expected one of ${MATMUL_DEVICE_CLASSES.join(', ')}`);
  return forced ?? deviceClassOf(gpu().adapterInfo);
}

/** What the tensor-core plans read of this device (attention's by default, matmul's always). */
export function subgroupMatrixDevice(): SubgroupMatrixDevice {
  const { features, adapterInfo } = gpu();
  return { features, ...adapterInfo, limits: deviceLimits() };
}

/**
 * The forward on the tensor cores: out [B, H, T, D] and lse [B, H, T] (f32) as attentionWithLse's, from f16 q, k, v
 * (u32 pairs or f16 tensors). Causal, windows, GQA, positionOffset and keyRange as the f32 kernel; D even, up to
 * 256. P is rounded to f16 before P V: out differs from the f32 kernel's on the same inputs by about 2^-11
 * relative. Throws, with the reason, where the device or the shape does not allow it.
 */
export function attentionTensorCore(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions & TensorCoreOptions = {}): { out: Tensor; lse: Tensor } {
  const setup = attentionSetup(q, k, v, opts, 'f16');
  const { variant, reason } = tensorCoreFor(setup.dims.D, opts);
  if (!variant) throw new GpuError(`attentionTensorCore(q ${shapeString(q.shape)}, k ${shapeString(k.shape)}): ${reason}; attentionWithLse with the f32 kernel serves these inputs`);
  return forwardInto(tensorCores.forwardCall(setup.dims, setup.mask, setup.scale, variant), q, k, v, setup);
}

/**
 * The backward of attentionTensorCore on the tensor cores: dq [B, H, T, D], dk and dv [B, KVH, S, D] (f32) from
 * dout and the forward's out and lse (f32, [B, H, T, D] and [B, H, T]) and its f16 q, k, v and options. P is
 * recomputed from the saved lse; dO, P and dS are rounded to f16 as operands (f32 accumulation), so the gradients
 * differ from the f32 kernels' on the same inputs by about 2e-4 relative (measured emulated). Throws, with the reason, where the
 * device or the shape does not allow it (attention() with the f32 kernels serves f32 inputs).
 */
export function attentionTensorCoreBackward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts: AttentionOptions & TensorCoreOptions = {}): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const setup = attentionSetup(q, k, v, opts, 'f16');
  const what = `attentionTensorCoreBackward(q ${shapeString(q.shape)}, k ${shapeString(k.shape)})`;
  const { B, H, T, D } = setup.dims;
  for (const [name, t, shape] of [['dout', dout, [B, H, T, D]], ['out', out, [B, H, T, D]], ['lse', lse, [B, H, T]]] as const)
    if (t.dtype !== 'f32' || shapeString(t.shape) !== shapeString(shape)) throw new GpuError(`${what}: ${name} must be f32 ${shapeString(shape)}, got ${t.dtype} ${shapeString(t.shape)}`);
  const { dkdv, dq, reason } = tensorCoreBackwardFor(D, setup.mask.hasKeyRange, opts);
  if (!dkdv || !dq) throw new GpuError(`${what}: ${reason}; attention() with the f32 kernels serves f32 inputs`);
  return tensorCoreBackward(tensorCores, { dkdv, dq }, dout, q, k, v, out, lse, setup);
}

export interface DecodeOptions {
  window?: number;
  scale?: number;
  keyRange?: Tensor;
  /** Keys [0, cacheLength) of the cache hold data; S by default. */
  cacheLength?: number;
  /** Position of query row 0; cacheLength - T by default (the new tokens are the cache's last keys). */
  positionOffset?: number;
  /** Keys per chunk of the split; DECODE_CHUNK by default. */
  keysPerChunk?: number;
  /** The decode kernel (kernels/attention_decode.ts); the device's by default (DECODE_VARIANTS: 'thread' on a CPU driver). */
  variant?: DecodeVariant;
}

/**
 * Generation: q [B, H, T, D] (a few new tokens, causal) against a KV cache k, v [B, KVH, S, D], split over
 * key chunks and merged (one dispatch where the cache fills one chunk). No tape; f32 or f16 storage (see the
 * header). Equals attention()'s rows.
 */
export function attentionDecode(q: Tensor, k: Tensor, v: Tensor, opts: DecodeOptions = {}): Tensor {
  const filled = opts.cacheLength ?? k.shape[2];
  const positionOffset = opts.positionOffset ?? filled - q.shape[2];
  if (!Number.isInteger(filled) || filled < 0 || filled > k.shape[2]) throw new GpuError(`attentionDecode: cacheLength ${filled} outside the cache's ${k.shape[2]} rows`);
  const storage = storageOf(q);
  const { dims, mask, scale, keyRange } = attentionSetup(q, k, v, { ...opts, causal: true, positionOffset }, storage);
  const chunk = opts.keysPerChunk ?? DECODE_CHUNK;
  const variant = opts.variant ?? (dims.D % 4 === 0 ? byDevice(DECODE_VARIANTS) : DECODE_VARIANTS.gpu); // the thread variant reads quads
  const chunks = decodeChunks(deviceLimits(), filled, chunk, dims.D, variant);
  const rows = dims.B * dims.H * dims.T;
  const partialOut = Tensor.empty([rows, chunks, dims.D], 'f32', 'attention decode partial out');
  const partialStats = Tensor.empty([rows, chunks, 2], 'f32', 'attention decode partial stats');
  launch(attentionDecodeCall(deviceLimits(), dims, filled, mask, scale, chunk, storage, variant), [q, k, v, keyRange], [partialOut, partialStats]);
  if (chunks === 1) { // the kernel wrote the normalised rows, [rows, 1, D] as [B, H, T, D]
    partialStats.dispose();
    const out = partialOut.reshape([dims.B, dims.H, dims.T, dims.D]);
    partialOut.dispose();
    return out;
  }
  const out = Tensor.empty([dims.B, dims.H, dims.T, dims.D], 'f32', 'attention decode out');
  launch(attentionDecodeReduceCall(deviceLimits(), rows, chunks, dims.D), [partialOut, partialStats], [out]);
  partialOut.dispose();
  partialStats.dispose();
  return out;
}

/** The mask of attentionUsefulFlops: host-side, so padding is given as per-row key ranges. */
export interface UsefulMask { causal?: boolean; window?: number; positionOffset?: number; keyRanges?: readonly (readonly [number, number])[] }

/** FLOPs of the visible entries alone: 4·D each forward (Q Kᵀ, P V), 10·D backward (five products). */
export function attentionUsefulFlops(dims: AttentionDims, m: UsefulMask = {}): { forward: number; backward: number } {
  const mask: AttentionMask = { causal: m.causal ?? false, window: m.window ?? 0, positionOffset: m.positionOffset ?? 0, hasKeyRange: false };
  let visible = 0;
  for (let b = 0; b < dims.B; b++) {
    const [start, end] = m.keyRanges?.[b] ?? [0, dims.S];
    for (let t = 0; t < dims.T; t++) {
      const pos = t + mask.positionOffset;
      const [lo, hi] = visibleKeySpan(pos, pos, dims.S, mask);
      visible += Math.max(0, Math.min(hi, end) - Math.max(lo, start));
    }
  }
  visible *= dims.H;
  return { forward: 4 * dims.D * visible, backward: 10 * dims.D * visible };
}

