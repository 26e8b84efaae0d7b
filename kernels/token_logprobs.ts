// Per-token log-probabilities from next-token logits (log-softmax and the target's entry, fused) and their backward,
// over the whole vocabulary or chunk by chunk (the LM head without the [B·T, V] logits), and the chunk plan.
import { ELEMENTWISE_SHAPES, elementwiseLaunch, gcd, grid1d, LOGIT_ROW_THREADS, wgsl, rowWorkgroupSize, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

// The state between chunks is an optional output: the one-chunk variant neither declares nor binds it.
function tokenLogprobsVariant(chunked: boolean): Kernel {
  return {
    name: 'tokenLogprobs',
    source: wgsl(import.meta.url, 'token_logprobs.wgsl', { includes: ['row_logsumexp.wgsl', chunked ? 'token_logprobs_state.wgsl' : 'token_logprobs_no_state.wgsl'] }),
    inputs: ['logits', 'ids'], outputs: ['state', 'logp', 'lse'],
    params: [['tokens', 'u32'], ['T', 'u32'], ['V', 'u32'], ['first', 'u32'], ['vocab', 'u32'], ['firstChunk', 'u32'], ['lastChunk', 'u32']], constants: ['WG'],
    absent: chunked ? [] : ['state'],
  };
}

export const tokenLogprobsKernel = tokenLogprobsVariant(false);
export const tokenLogprobsChunkKernel = tokenLogprobsVariant(true);

export const tokenLogprobsBackwardKernel: Kernel = {
  name: 'tokenLogprobsBackward', source: wgsl(import.meta.url, 'token_logprobs_backward.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: ['logits', 'ids', 'lse', 'dlogp'], outputs: ['dlogits'], params: [['n', 'u32'], ['perThread', 'u32'], ['T', 'u32'], ['V', 'u32'], ['first', 'u32']], constants: ['WG'],
};

/** Columns [first, first + rows) of the vocabulary (rows of the head's weight). */
export interface VocabChunk { first: number; rows: number }

/**
 * logp and lse [B, T] from a chunk of logits [B, T, chunk.rows] and ids [B, T], one workgroup per token; the state
 * [3·B·T] kept between chunks is bound unless the chunk is the whole vocabulary (absent: the op passes null);
 * maxThreads: a row's most threads (LOGIT_ROW_THREADS, the op's choice by device).
 */
export function tokenLogprobsCall(limits: DeviceLimits, B: number, T: number, vocab: number, chunk: VocabChunk = { first: 0, rows: vocab }, maxThreads: number = LOGIT_ROW_THREADS.gpu): KernelCall {
  const tokens = B * T, predicted = B * (T - 1), n = predicted * chunk.rows;
  const firstChunk = chunk.first === 0, lastChunk = chunk.first + chunk.rows === vocab;
  return {
    kernel: firstChunk && lastChunk ? tokenLogprobsKernel : tokenLogprobsChunkKernel,
    constants: { WG: rowWorkgroupSize(limits, chunk.rows, 8, 0, undefined, maxThreads) }, // a running max and a running sum per thread
    params: { tokens, T, V: chunk.rows, first: chunk.first, vocab, firstChunk: firstChunk ? 1 : 0, lastChunk: lastChunk ? 1 : 0 },
    workgroups: grid1d(tokens, 1, limits),
    // Per logit of a predicting row: compare, subtract, exponentiate and add; each token reads its id and the target's
    // logit. Merging a row's pair with the previous chunks' (a few flops per row and chunk) is not counted.
    cost: {
      flops: 4 * n,
      bytesRead: 4 * n + 8 * predicted + (firstChunk ? 0 : 12 * predicted),
      bytesWritten: lastChunk ? 8 * tokens : 12 * predicted,
    },
  };
}

/** dlogits [B, T, chunk.rows] for a chunk of the vocabulary (the whole by default): a logit an element (elementwise_main.wgsl). */
export function tokenLogprobsBackwardCall(limits: DeviceLimits, B: number, T: number, vocab: number, chunk: VocabChunk = { first: 0, rows: vocab },
  shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const n = B * T * chunk.rows;
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: tokenLogprobsBackwardKernel,
    constants,
    params: { n, perThread, T, V: chunk.rows, first: chunk.first },
    workgroups,
    // Per logit: subtract, exponentiate, subtract from the one-hot, multiply; logits once, per-row values once per row.
    cost: { flops: 4 * n, bytesRead: 4 * n + 12 * B * T, bytesWritten: 4 * n },
  };
}

/** The logits of one chunk of the LM head take at most this much memory, unless one binding holds less. */
export const HEAD_CHUNK_BYTES = 32 * 2 ** 20;

/**
 * The vocabulary rows of each chunk of the LM head over `tokens` positions: the whole vocabulary when its logits fit
 * HEAD_CHUNK_BYTES, else the most rows whose logits do (and whose logits and f32 gradient rows each fit one binding,
 * which bounds the weight's rows too), a multiple of the rows that start every chunk's weight window on the offset
 * alignment whether the weight is stored in 32 or 16 bits.
 */
export function headChunkRows(limits: DeviceLimits, tokens: number, vocab: number, hidden: number, budgetBytes = HEAD_CHUNK_BYTES): { rows: number; chunks: number } {
  const maxBinding = limits.maxStorageBufferBindingSize;
  const fit = Math.floor(Math.min(budgetBytes / (4 * tokens), maxBinding / (4 * tokens), maxBinding / (4 * hidden)));
  if (fit >= vocab) return { rows: vocab, chunks: 1 };
  const align = limits.minStorageBufferOffsetAlignment;
  const step = align / gcd(align, 2 * hidden);
  const rows = Math.max(step, Math.floor(fit / step) * step);
  return { rows, chunks: Math.ceil(vocab / rows) };
}
