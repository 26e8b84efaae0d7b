// Per-token log-probabilities from next-token logits (log-softmax and the target's entry, fused) and their backward.
import { grid1d, loadWgsl, wgsl, reductionWorkgroupSize, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const tokenLogprobsKernel: Kernel = {
  name: 'tokenLogprobs', source: wgsl(import.meta.url, 'token_logprobs.wgsl', { includes: ['row_logsumexp.wgsl'] }),
  inputs: ['logits', 'ids'], outputs: ['logp', 'lse'], params: [['tokens', 'u32'], ['T', 'u32'], ['V', 'u32']], constants: ['WG'],
};

export const tokenLogprobsBackwardKernel: Kernel = {
  name: 'tokenLogprobsBackward', source: loadWgsl(import.meta.url, 'token_logprobs_backward.wgsl'),
  inputs: ['logits', 'ids', 'lse', 'dlogp'], outputs: ['dlogits'], params: [['n', 'u32'], ['T', 'u32'], ['V', 'u32']], constants: ['WG'],
};

/** logp and lse [B, T] from logits [B, T, V] and ids [B, T]: one workgroup per token. */
export function tokenLogprobsCall(limits: DeviceLimits, B: number, T: number, V: number): KernelCall {
  const tokens = B * T, predicted = B * (T - 1), n = predicted * V;
  return {
    kernel: tokenLogprobsKernel,
    constants: { WG: reductionWorkgroupSize(limits, 8) }, // a running max and a running sum per thread
    params: { tokens, T, V },
    workgroups: grid1d(tokens, 1, limits),
    // Per logit of a predicting row: compare, subtract, exponentiate and add; each token reads its id and the target's logit.
    cost: { flops: 4 * n, bytesRead: 4 * n + 8 * predicted, bytesWritten: 8 * tokens },
  };
}

const WG = 256;

/** dlogits [B, T, V]: one thread per logit. */
export function tokenLogprobsBackwardCall(limits: DeviceLimits, B: number, T: number, V: number): KernelCall {
  const n = B * T * V;
  return {
    kernel: tokenLogprobsBackwardKernel,
    constants: { WG },
    params: { n, T, V },
    workgroups: grid1d(n, WG, limits),
    // Per logit: subtract, exponentiate, subtract from the one-hot, multiply; logits once, per-row values once per row.
    cost: { flops: 4 * n, bytesRead: 4 * n + 12 * B * T, bytesWritten: 4 * n },
  };
}
