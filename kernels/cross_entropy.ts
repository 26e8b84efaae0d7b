// Fused softmax cross-entropy: per-row loss and, in the same pass, the logits gradient scaled by 1/count.
import { grid1d, LOGIT_ROW_THREADS, wgsl, rowWorkgroupSize, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

// The gradient is optional: the variant without it (evaluation) neither declares nor binds count and dlogits
// (cross_entropy_no_grad.wgsl).
function crossEntropyVariant(writeGrad: boolean): Kernel {
  return {
    name: 'crossEntropy',
    source: wgsl(import.meta.url, 'cross_entropy.wgsl', { includes: ['row_logsumexp.wgsl', writeGrad ? 'cross_entropy_grad.wgsl' : 'cross_entropy_no_grad.wgsl'] }),
    inputs: ['logits', 'targets', 'count'],
    outputs: ['dlogits', 'rowLoss'],
    params: [['rows', 'u32'], ['V', 'u32'], ['ignoreIndex', 'i32']],
    constants: ['WG'],
    absent: writeGrad ? [] : ['count', 'dlogits'],
  };
}

export const crossEntropyKernel = crossEntropyVariant(true);
export const crossEntropyLossKernel = crossEntropyVariant(false);

/**
 * rows x V logits; `writeGrad` false skips the gradient pass (evaluation): count and dlogits are then absent (null);
 * maxThreads: a row's most threads (LOGIT_ROW_THREADS, the op's choice by device).
 */
export function crossEntropyCall(limits: DeviceLimits, rows: number, V: number, ignoreIndex: number, writeGrad: boolean, maxThreads: number = LOGIT_ROW_THREADS.gpu): KernelCall {
  const WG = rowWorkgroupSize(limits, V, 8, 0, undefined, maxThreads); // a running max and a running sum per thread
  const n = rows * V;
  // Per logit: pass 1 compares, subtracts, exponentiates and adds (4); pass 2 subtracts, exponentiates,
  // scales and subtracts the one-hot (5). Logits are read once per pass; each row reads its target,
  // the target's logit and the count.
  return {
    kernel: writeGrad ? crossEntropyKernel : crossEntropyLossKernel,
    constants: { WG },
    params: { rows, V, ignoreIndex },
    workgroups: grid1d(rows, 1, limits),
    cost: writeGrad
      ? { flops: 9 * n, bytesRead: 8 * n + 12 * rows, bytesWritten: 4 * n + 4 * rows }
      : { flops: 4 * n, bytesRead: 4 * n + 8 * rows, bytesWritten: 4 * rows },
  };
}
