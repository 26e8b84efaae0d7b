// Embedding gather and its deterministic, atomic-free backward (counting sort of the tokens, then one sum per id).
import { bytesPerElement, FORMAT_CONSTANT, type FloatDType } from './dtype.ts';
import { ceilDiv, grid1d, loadWgsl, wgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';

export const embeddingKernel: Kernel = {
  name: 'embedding', source: wgsl(import.meta.url, 'embedding.wgsl', { includes: ['float_storage.wgsl'] }),
  inputs: ['ids', 'weight'], outputs: ['out'], params: [['n', 'u32'], ['cols', 'u32'], ['vocab', 'u32']], constants: ['WG', 'WEIGHT_FORMAT'],
};

export const embeddingOrderKernel: Kernel = {
  name: 'embeddingOrder', source: loadWgsl(import.meta.url, 'embedding_order.wgsl'),
  inputs: ['ids'], outputs: ['order'], params: [['tokens', 'u32']], constants: ['WG'],
};

export const embeddingBackwardKernel: Kernel = {
  name: 'embeddingBackward', source: loadWgsl(import.meta.url, 'embedding_backward.wgsl'),
  inputs: ['ids', 'order', 'dout'], outputs: ['dweight'], params: [['tokens', 'u32'], ['cols', 'u32'], ['vocab', 'u32']], constants: ['WG'],
};

// WebGPU guarantees 256 invocations per workgroup (and 1 KiB for the order kernel's tile is well within 16 KiB).
const WG = 256;

/** out[t, :] = weight[ids[t], :] for `tokens` ids into a [vocab, cols] table stored as weightDtype; out is f32. */
export function embeddingCall(limits: DeviceLimits, tokens: number, vocab: number, cols: number, weightDtype: FloatDType): KernelCall {
  const n = tokens * cols;
  return {
    kernel: embeddingKernel, constants: { WG, WEIGHT_FORMAT: FORMAT_CONSTANT[weightDtype] }, params: { n, cols, vocab },
    workgroups: grid1d(n, WG, limits),
    cost: { flops: 0, bytesRead: 4 * tokens + bytesPerElement(weightDtype) * n, bytesWritten: 4 * n },
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
 * known only on the GPU, so bytes written are bounded by min(tokens, vocab) rows.
 */
export function embeddingBackwardCall(limits: DeviceLimits, tokens: number, vocab: number, cols: number): KernelCall {
  const n = tokens * cols;
  return {
    kernel: embeddingBackwardKernel, constants: { WG }, params: { tokens, cols, vocab },
    workgroups: grid1d(tokens, 1, limits),
    // dout once; each token's order entry and id are read by its run's sum (per column block) and by two run checks.
    cost: { flops: n, bytesRead: 4 * n + 8 * tokens * (ceilDiv(cols, WG) + 2), bytesWritten: 4 * Math.min(tokens, vocab) * cols },
  };
}
