// Embedding gather and its deterministic, atomic-free backward (counting sort of the tokens, then one sum per id).
import { bytesPerElement, FORMAT_CONSTANT, type FloatDType } from './dtype.ts';
import { ceilDiv, ELEMENTWISE_SHAPES, elementwiseLaunch, grid1d, loadWgsl, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const embeddingKernel: Kernel = {
  name: 'embedding', source: wgsl(import.meta.url, 'embedding.wgsl', { includes: ['float_storage.wgsl'] }),
  inputs: ['ids', 'weight'], outputs: ['out'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['cols', 'u32'], ['vocab', 'u32'], ['first', 'u32'], ['zeroOthers', 'u32']],
  constants: ['WG', 'WEIGHT_FORMAT'],
};

export const embeddingOrderKernel: Kernel = {
  name: 'embeddingOrder', source: loadWgsl(import.meta.url, 'embedding_order.wgsl'),
  inputs: ['ids'], outputs: ['order'], params: [['tokens', 'u32']], constants: ['WG'],
};

export const embeddingBackwardKernel: Kernel = {
  name: 'embeddingBackward', source: loadWgsl(import.meta.url, 'embedding_backward.wgsl'),
  inputs: ['ids', 'order', 'dout'], outputs: ['dweight'], params: [['tokens', 'u32'], ['cols', 'u32'], ['vocab', 'u32'], ['first', 'u32']], constants: ['WG'],
};

// WebGPU guarantees 256 invocations per workgroup (and 1 KiB for the order kernel's tile is well within 16 KiB).
const WG = 256;

/**
 * The backward's threads a run of equal ids (its columns split among them), per device kind (the op picks by
 * Gpu.onHostCpu): a CPU driver runs every invocation of a workgroup, those past the columns too, and one run's
 * workgroup stands beside one a token that returns at once. lavapipe, the demo's [19, 64] table from 320 tokens: the
 * embedding's forward and backward 1.28 ms with 256, 0.98 with 32, the same bits; hh-byte-base's [260, 128] from 768:
 * 3.48 -> 2.32 ms.
 */
export const EMBEDDING_BACKWARD_THREADS = { gpu: WG, cpu: 32 } as const;

/** A window of a table: its rows [first, first + rows) of `vocab`. */
export interface TableWindow { first: number; rows: number }

/**
 * out[t, :] = weight[ids[t], :] for `tokens` ids into a [vocab, cols] table stored as weightDtype (out is f32),
 * for the ids in `window` of the table (bound as the weight; the whole table by default). The first window's launch
 * zeroes the other ids' rows. The rows moved are counted once, with the first window; the others add their id reads.
 */
export function embeddingCall(limits: DeviceLimits, tokens: number, vocab: number, cols: number, weightDtype: FloatDType, window: TableWindow = { first: 0, rows: vocab },
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = tokens * cols;
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: embeddingKernel, constants: { ...constants, WEIGHT_FORMAT: FORMAT_CONSTANT[weightDtype] },
    params: { n, perThread, cols, vocab: window.rows, first: window.first, zeroOthers: window.first === 0 ? 1 : 0 },
    workgroups,
    cost: window.first === 0 ? { flops: 0, bytesRead: 4 * tokens + bytesPerElement(weightDtype) * n, bytesWritten: 4 * n } : { flops: 0, bytesRead: 4 * tokens, bytesWritten: 0 },
  };
}

/**
 * Rows of cols f32 elements gathered into an existing tensor: out row i = x row ids[i] of x's `rows`, for the `moved`
 * ids that are not negative; a negative id's row is written 0 (zeroOthers) or left as it was (KV cache rows moving to
 * other columns: engine/ops/shape.ts gatherRows). Ledger name 'gatherRows'.
 */
export function gatherRowsCall(limits: DeviceLimits, ids: number, rows: number, cols: number, moved: number, zeroOthers: boolean, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const call = embeddingCall(limits, ids, rows, cols, 'f32', { first: 0, rows }, shape);
  return {
    ...call, op: 'gatherRows', params: { ...call.params, zeroOthers: zeroOthers ? 1 : 0 },
    cost: { flops: 0, bytesRead: 4 * ids + 4 * moved * cols, bytesWritten: 4 * cols * (zeroOthers ? ids : moved) },
  };
}

/**
 * order = the token positions sorted by (id, position). Each of the ceil(N/WG) workgroups streams all N ids
 * through workgroup memory: N² integer comparisons, which are not FLOPs; ledger name 'embeddingBackward'.
 */
export function embeddingOrderCall(limits: DeviceLimits, tokens: number): KernelCall {
  return {
    kernel: embeddingOrderKernel, op: 'embeddingBackward', constants: { WG }, params: { tokens },
    workgroups: grid1d(tokens, WG, limits),
    cost: { flops: 0, bytesRead: 4 * tokens * ceilDiv(tokens, WG), bytesWritten: 4 * tokens },
  };
}

/**
 * dweight[v, :] = Σ dout[t, :] over the tokens t with ids[t] = v, one workgroup per sorted position (those not
 * starting a run of equal ids exit at once). Every dout element is added once; the number of distinct ids is
 * known only on the GPU, so bytes written are bounded by min(tokens, vocab) rows. `window`: the rows of the
 * gradient bound as dweight (the whole table by default); the tokens of other ids are skipped.
 */
export function embeddingBackwardCall(limits: DeviceLimits, tokens: number, vocab: number, cols: number, window: TableWindow = { first: 0, rows: vocab },
  threads: number = EMBEDDING_BACKWARD_THREADS.gpu): KernelCall {
  const n = tokens * cols;
  return {
    kernel: embeddingBackwardKernel, constants: { WG: threads }, params: { tokens, cols, vocab: window.rows, first: window.first },
    workgroups: grid1d(tokens, 1, limits),
    // dout once; each token's order entry and id are read by its run's sum (per column block) and by two run checks.
    // Summed once, with the first window; the others add their run checks.
    cost: window.first === 0
      ? { flops: n, bytesRead: 4 * n + 8 * tokens * (ceilDiv(cols, threads) + 2), bytesWritten: 4 * Math.min(tokens, vocab) * cols }
      : { flops: 0, bytesRead: 16 * tokens, bytesWritten: 0 },
  };
}
