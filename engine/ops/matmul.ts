// Matrix products: matmul (batched, either operand transposed, optional bias) and linear, with their backward;
// f16 x f16 products on the tensor cores where the device has subgroup matrices (MatmulVariant).
import { gradEnabled, record, type Grad } from '../autodiff.ts';
import { activation } from './activations.ts';
import { gpu, GpuError, subgroupDevice, type Gpu } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, numelOf, shapeString } from '../tensor.ts';
import { castF16 } from './cast.ts';
import { add, broadcastShape } from './elementwise.ts';
import type { Activation } from '../../kernels/activation.ts';
import { isFloatDType, type FloatDType } from '../../kernels/dtype.ts';
import { chosenMatmulCall, deviceClassOf, MATMUL_DEVICE_CLASSES, MATMUL_TABLE, type MatmulDeviceClass, type MatmulShape, type SubgroupDevice } from '../../kernels/matmul.ts';
import { fitsSmallM, matmulSmallMCall, matmulSmallMGroupCall, smallMVariantFor, type SmallMGroup } from '../../kernels/matmul_small_m.ts';
import { matmulTensorCoreCall, matmulTensorCoreVariant } from '../../kernels/matmul_tensor_core.ts';
import type { SubgroupMatrixDevice } from '../../kernels/attention_forward_tensor_core.ts';
import { subgroupMatrixDevice } from './attention.ts';
import type { KernelCall } from '../../kernels/spec.ts';
import { reduceSumCall } from '../../kernels/reduce_sum.ts';

/**
 * Which kernel computes a forward product: 'auto' (the default) the tensor cores (kernels/matmul_tensor_core.ts:
 * f16 operands, f32 accumulation) where both operands are f16 and the device has subgroup matrices, else the
 * f32-arithmetic kernels; 'f32' always those (the tiled, rows or small-M kernel); 'tensorCore' only the tensor
 * cores (throws, with the reason, where they cannot serve the product). Gradients take the tiled kernel, but those of an
 * f16 product (mixed precision), which take the forward's choice.
 */
export type MatmulVariant = 'auto' | 'f32' | 'tensorCore';

export interface MatmulOptions { transA?: boolean; transB?: boolean; bias?: Tensor; variant?: MatmulVariant }

/** A product's sizes and layout; the storage formats come from the tensors it is launched on. */
type ProductShape = Omit<MatmulShape, 'dtypeA' | 'dtypeB'>;

/**
 * a [..., M, K] (or [..., K, M] with transA) times b [..., K, N] (or [..., N, K] with transB), plus bias [N]:
 * out [..., M, N]. Batch dims are equal, or one operand has none (or only ones) and is shared by every entry.
 * a and b may be stored as f32, f16 or bf16 (math and out are f32); a 16-bit operand is frozen (no gradient) unless
 * it is a castF16 copy (engine/ops/cast.ts), whose gradient is f32.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { s, outShape, what } = productShape(a, b, opts);
  return recordedProduct(a, b, opts.bias ?? null, s, outShape, what, undefined, opts.variant);
}

/**
 * op(a)·op(b) as matmul computes it, written into `out` (e.g. a window of a gradient larger than one binding),
 * off the tape. out has the product's element count.
 */
export function matmulInto(out: Tensor, a: Tensor, b: Tensor, opts: Omit<MatmulOptions, 'bias'> = {}): void {
  const { s, outShape, what } = productShape(a, b, opts);
  if (out.dtype !== 'f32' || out.numel !== numelOf(outShape)) throw new GpuError(`${what} into ${out.dtype} ${shapeString(out.shape)}: expected f32 ${shapeString(outShape)}`);
  const shape = storedAs(s, a, b);
  launch(forwardCall(shape, opts.variant ?? 'auto', what), [a, b, null, null], [out]);
}

/** The product's sizes and layout, its output shape, and its description for errors. */
function productShape(a: Tensor, b: Tensor, opts: MatmulOptions): { s: ProductShape; outShape: number[]; what: string } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const bias = opts.bias ?? null;
  const what = `matmul ${shapeString(a.shape)}${transA ? 'ᵀ' : ''} · ${shapeString(b.shape)}${transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new GpuError(`${what}: both operands need at least 2 dims`);
  const [aRows, aCols] = a.shape.slice(-2);
  const [bRows, bCols] = b.shape.slice(-2);
  const [M, K] = transA ? [aCols, aRows] : [aRows, aCols];
  const [bK, N] = transB ? [bCols, bRows] : [bRows, bCols];
  if (K !== bK) throw new GpuError(`${what}: inner dims ${K} and ${bK} differ`);
  const batchShape = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2), what);
  const batch = numelOf(batchShape);
  const batchA = numelOf(a.shape.slice(0, -2));
  const batchB = numelOf(b.shape.slice(0, -2));
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1))
    throw new GpuError(`${what}: batch dims must be equal, or absent on one operand`);
  const s: ProductShape = batchB === 1 && !transA
    // A weight shared over the batch multiplies the stacked rows of A: one (batch·M)×K by K×N product.
    ? { batch: 1, M: batch * M, N, K, strideA: 0, strideB: 0, transA, transB, hasBias: bias !== null }
    : { batch, M, N, K, strideA: batchA === 1 ? 0 : M * K, strideB: batchB === 1 ? 0 : K * N, transA, transB, hasBias: bias !== null };
  return { s, outShape: [...batchShape, M, N], what };
}

export interface LinearOptions {
  /** Names the forward product in the ledger (e.g. LoRA's loraDown / loraUp); by default the kernel's name. */
  op?: string;
  /**
   * f32 [..., out], added to the product as it is stored (a transformer's residual x + proj(h): one pass over the
   * output instead of a separate add); its gradient is the output's.
   */
  residual?: Tensor;
  /**
   * f(x · weightᵀ + bias) (+ residual): applied as the product is stored where nothing records a gradient
   * (generation, reference passes), else by the activation op after the product (its backward needs the product).
   */
  activation?: Activation;
}

/**
 * x [..., in] · weightᵀ + bias (+ residual), with weight [out, in] (transformers' layout) and bias [out]: out
 * [..., out]. The weight may be f16 or bf16 storage (frozen: x gets its gradient, the weight none).
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, opts: LinearOptions = {}): Tensor {
  const what = `linear ${shapeString(x.shape)} · ${shapeString(weight.shape)}ᵀ`;
  if (weight.rank !== 2 || x.rank < 1 || x.shape[x.rank - 1] !== weight.shape[1])
    throw new GpuError(`${what}: expected x [..., in] and weight [out, in]`);
  const [N, K] = weight.shape;
  const outShape = [...x.shape.slice(0, -1), N];
  const { residual, activation: fn } = opts;
  if (residual && (residual.dtype !== 'f32' || shapeString(residual.shape) !== shapeString(outShape)))
    throw new GpuError(`${what}: residual ${residual.dtype} ${shapeString(residual.shape)} should be f32 ${shapeString(outShape)}`);
  if (fn && gradEnabled() && [x, weight, bias, residual].some((t) => t?.requiresGrad)) {
    const activated = activation(fn, linear(x, weight, bias, { op: opts.op }));
    return residual ? add(activated, residual) : activated;
  }
  const s: ProductShape = {
    batch: 1, M: numelOf(x.shape.slice(0, -1)), N, K, strideA: 0, strideB: 0, transA: false, transB: true,
    hasBias: bias !== undefined, hasResidual: residual !== undefined, activation: fn,
  };
  return recordedProduct(x, weight, bias ?? null, s, outShape, what, opts.op, 'auto', residual ?? null);
}

/**
 * How linearGroup combines its products: 'concatenated' [..., Σ out_i] = [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ] (three weights
 * [out_i, in]: attention's q, k and v), 'swiglu' [..., out] = silu(x·gateᵀ) · (x·upᵀ) (two weights [out, in]).
 */
export type LinearGroupForm = 'concatenated' | 'swiglu';

/**
 * Decoding's grouped products, off the tape, in one small-M dispatch: x [..., in] times the weights [out_i, in], all
 * of one storage format, combined as `form` says; the same bits as the separate products the linear op runs on
 * them (the small-M kernel in the same variant: the same order of accumulation), and for 'swiglu' as the swiglu op on
 * those (engine/ops/activations.ts). Returns null where that would not be the separate products' kernel, so the
 * caller runs them: a gradient being recorded, more rows than the small-M kernel takes, or weights of different
 * formats. The ledger charges the products' FLOPs to matmulSmallM and the gate's to 'swiglu', as for the parts.
 */
export function linearGroup(x: Tensor, weights: readonly Tensor[], form: LinearGroupForm): Tensor | null {
  const what = `linearGroup ${form} ${shapeString(x.shape)} · ${weights.map((w) => `${w.dtype} ${shapeString(w.shape)}ᵀ`).join(', ')}`;
  const K = x.shape[x.rank - 1];
  if (weights.length !== (form === 'concatenated' ? 3 : 2) || weights.some((w) => w.rank !== 2 || w.shape[1] !== K))
    throw new GpuError(`${what}: expected x [..., in] and ${form === 'concatenated' ? 'three' : 'two'} weights [out, in]`);
  if (form === 'swiglu' && weights[0].shape[0] !== weights[1].shape[0]) throw new GpuError(`${what}: gate and up must have one shape`);
  const dtypeB = weights[0].dtype;
  const rows = x.shape.slice(0, -1);
  const M = numelOf(rows);
  const s: MatmulShape = { batch: 1, M, N: weights[0].shape[0], K, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: false, dtypeA: x.dtype as FloatDType, dtypeB: dtypeB as FloatDType };
  if (gradEnabled() || !isFloatDType(dtypeB) || weights.some((w) => w.dtype !== dtypeB) || !fitsSmallM(s)) return null;
  const widths = weights.map((w) => w.shape[0]);
  const group: SmallMGroup = form === 'concatenated'
    ? { form, widths: [widths[0], widths[1], widths[2]] }
    : { form: 'gated', width: widths[0], fn: 'silu', op: 'swiglu' };
  const call = matmulSmallMGroupCall(deviceLimits(), M, K, dtypeB, group, smallMVariantFor(MATMUL_TABLE, matmulDevice(gpu()).deviceClass, M));
  const out = Tensor.empty([...rows, form === 'concatenated' ? widths[0] + widths[1] + widths[2] : widths[0]], 'f32', form === 'concatenated' ? 'linearGroup' : 'swiglu');
  // The gated kernel leaves binding 3 (the one-weight kernel's residual) out: null in its place.
  launch(call, [x, ...weights, ...(form === 'swiglu' ? [null] : [])], [out]);
  return out;
}

/** Runs the product s into a new tensor of outShape and records its backward. */
function recordedProduct(a: Tensor, b: Tensor, bias: Tensor | null, s: ProductShape, outShape: number[], what: string, op?: string, variant: MatmulVariant = 'auto', residual: Tensor | null = null): Tensor {
  for (const t of [a, b]) {
    if (!isFloatDType(t.dtype)) throw new GpuError(`${what}: operands must be f32, f16 or bf16, got ${t.dtype}`);
    // There is no 16-bit gradient or update: a 16-bit leaf is a weight that stays fixed (a frozen base model); a
    // 16-bit operand with a gradient is a castF16 copy (mixed precision), whose f32 gradient flows to its f32 input.
    if (t.dtype !== 'f32' && t.requiresGrad && !t.hasProducer)
      throw new GpuError(`${what}: operand ${shapeString(t.shape)} is ${t.dtype} with requiresGrad set; 16-bit tensors are frozen (no gradient): keep a trained weight in f32 (mixed precision casts it: engine/ops/cast.ts)`);
  }
  if (bias && bias.dtype !== 'f32') throw new GpuError(`${what}: bias must be f32, got ${bias.dtype}`);
  if (bias && (bias.rank !== 1 || bias.numel !== s.N)) throw new GpuError(`${what}: bias ${shapeString(bias.shape)} should be [${s.N}]`);
  const out = product(a, b, bias, forwardCall(storedAs(s, a, b), variant, what, op), outShape, residual);
  const inputs = [a, b, ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  // dA reads B and dB reads A (from their storage as it is, 16-bit included).
  const saved = [...(a.requiresGrad ? [b] : []), ...(b.requiresGrad ? [a] : [])];
  record('matmul', inputs, [out], saved, ([g]) => {
    const grads = matmulBackward(g!, a, b, bias, s);
    return residual ? [...grads, g!] : grads; // forward added the residual, so its gradient is dOut's
  });
  return out;
}

/** Which row of kernels/matmul_tiles.json a device reads: lavapipe (a CPU), NVIDIA, or any other. */
export function matmulDeviceClass(info: Gpu['adapterInfo']): MatmulDeviceClass { return deviceClassOf(info); }

/**
 * The forward product's kernel: the tensor cores where the variant allows and they serve s (matmulTensorCore in the
 * ledger); else, for a few rows against a weight (decoding, which would fill 1..8 rows of a tile), the small-M
 * kernel, which reads the weight once with every workgroup busy (matmulSmallM); else the table's tiled or rows kernel.
 */
function forwardCall(s: MatmulShape, variant: MatmulVariant, what: string, op?: string): KernelCall {
  if (variant === 'tensorCore' || (variant === 'auto' && s.dtypeA === 'f16' && s.dtypeB === 'f16')) {
    const plan = matmulTensorCoreVariant(matmulDevice(gpu()).subgroupMatrix, s);
    if (plan.variant) return matmulTensorCoreCall(s, plan.variant, op);
    if (variant === 'tensorCore') throw new GpuError(`${what} on the tensor cores: ${plan.reason}; variant 'f32' serves these operands`);
  }
  return fitsSmallM(s) ? smallMCall(s, op) : tiledCall(s, op);
}

/**
 * The tiled (or, on a CPU, rows) kernel that kernels/matmul_tiles.json picks for this device and shape.
 * JUICE_MATMUL_CLASS=lavapipe|nvidia|other reads another device class's row, small-M choice included (benchmarks
 * compare choices with it).
 */
function tiledCall(s: MatmulShape, op?: string): KernelCall {
  const { deviceClass, subgroup } = matmulDevice(gpu());
  return chosenMatmulCall(MATMUL_TABLE, deviceClass, deviceLimits(), subgroup, s, op);
}

/** The small-M kernel in the variant kernels/matmul_tiles.json picks for this device and row count. */
function smallMCall(s: MatmulShape, op?: string): KernelCall {
  return matmulSmallMCall(deviceLimits(), s, smallMVariantFor(MATMUL_TABLE, matmulDevice(gpu()).deviceClass, s.M), op);
}

// What the choice reads of a device, worked out once per device rather than at every product.
interface MatmulDevice { deviceClass: MatmulDeviceClass; subgroup: SubgroupDevice; subgroupMatrix: SubgroupMatrixDevice }
const matmulDevices = new WeakMap<Gpu, MatmulDevice>();

function matmulDevice(g: Gpu): MatmulDevice {
  let d = matmulDevices.get(g);
  if (!d) {
    const forced = process.env.JUICE_MATMUL_CLASS as MatmulDeviceClass | undefined;
    if (forced !== undefined && !MATMUL_DEVICE_CLASSES.includes(forced)) throw new GpuError(`JUICE_MATMUL_CLASS=${forced}: expected one of ${MATMUL_DEVICE_CLASSES.join(', ')}`);
    d = { deviceClass: forced ?? matmulDeviceClass(g.adapterInfo), subgroup: subgroupDevice(g), subgroupMatrix: subgroupMatrixDevice() };
    matmulDevices.set(g, d);
  }
  return d;
}

/** The product s on a and b as stored. */
function storedAs(s: ProductShape, a: Tensor, b: Tensor): MatmulShape {
  return { ...s, dtypeA: a.dtype as FloatDType, dtypeB: b.dtype as FloatDType };
}

/** Launches C = op(A)·op(B) (+ bias) (+ residual) into a new tensor. */
function product(a: Tensor, b: Tensor, bias: Tensor | null, call: KernelCall, outShape: readonly number[], residual: Tensor | null = null): Tensor {
  const out = Tensor.empty(outShape, 'f32', call.op ?? call.kernel.name);
  // Without a bias or a residual the kernel variant has no binding for it (kernels/no_bias.wgsl, no_residual.wgsl).
  launch(call, [a, b, bias, residual], [out]);
  return out;
}

/**
 * Forward was C = op(A)·op(B) (+ bias) per batch entry, so d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC;
 * a transposed operand gets the transpose of that product (dA = op(B)·dCᵀ, dB = dCᵀ·op(A)), which is again
 * one product of the stored tensors. An operand shared over the batch gets the sum over the batch. An f16 product
 * (mixed precision) takes its gradient products in f16 too, dC cast (scaled by the loss scale, so that it neither
 * underflows nor, unnoticed, overflows), on the tensor cores where the device has them, as torch.autocast does.
 */
function matmulBackward(dOut: Tensor, a: Tensor, b: Tensor, bias: Tensor | null, s: ProductShape): Grad[] {
  const { batch, M, N, K, strideA, strideB, transA, transB } = s;
  const strideC = M * N;
  const dC = a.dtype === 'f16' && b.dtype === 'f16' ? castF16(dOut) : dOut;
  const dA = !a.requiresGrad ? null : transA
    ? operandGrad(b, dC, transB, true, K, M, N, strideB, strideC, batch, strideA === 0, a.shape)
    : operandGrad(dC, b, false, !transB, M, K, N, strideC, strideB, batch, strideA === 0, a.shape);
  const dB = !b.requiresGrad ? null : transB
    ? operandGrad(dC, a, true, transA, N, K, M, strideC, strideA, batch, strideB === 0, b.shape)
    : operandGrad(a, dC, !transA, false, K, N, M, strideA, strideC, batch, strideB === 0, b.shape);
  if (!bias) return [dA, dB];
  // Forward added bias[n] to every row, so dbias[n] = Σ over rows (and batch) of dC[., n].
  const dBias = bias.requiresGrad ? sumOverRows(dOut, batch * M, N, bias.shape) : null;
  return [dA, dB, dBias];
}

/** op(X)·op(Y) per batch entry (rows×inner by inner×cols), summed over the batch when the operand was shared. */
function operandGrad(x: Tensor, y: Tensor, transX: boolean, transY: boolean, rows: number, cols: number, inner: number,
  strideX: number, strideY: number, batch: number, shared: boolean, shape: readonly number[]): Tensor {
  const s: ProductShape = { batch, M: rows, N: cols, K: inner, strideA: strideX, strideB: strideY, transA: transX, transB: transY, hasBias: false };
  // Gradients are for training, with many rows: the tiled kernel, or for f16 operands the forward's choice.
  const stored = storedAs(s, x, y);
  const call = stored.dtypeA === 'f16' && stored.dtypeB === 'f16' ? forwardCall(stored, 'auto', 'matmulBackward', 'matmulBackward') : tiledCall(stored, 'matmulBackward');
  if (!shared || batch === 1) return product(x, y, null, call, shape);
  const perEntry = product(x, y, null, call, [batch, rows, cols]);
  return sumOverRows(perEntry, batch, rows * cols, shape);
}

/** Σ over the rows of a rows×cols matrix: out [cols], given the shape `shape`. */
function sumOverRows(x: Tensor, rows: number, cols: number, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape, 'f32', 'matmulBackward');
  launch(reduceSumCall(deviceLimits(), [1, 1, rows, cols], [1, 1, 1, cols], 1, 'matmulBackward', elementwiseShape()), [x], [out]);
  return out;
}
