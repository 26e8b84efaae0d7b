// The LM head without the logits: token log-probabilities (and so the next-token cross-entropy) straight from the
// hidden states and the head's weight, applied over vocabulary chunks, so that the [B·T, V] logits never exist
// (the Liger-kernel idea; 8 x 512 x 50304 f32 logits are 824 MB). Forward: per chunk, the chunk's logits and a
// merge of their (max, sum of exp) and the target's logit into a per-token state. Backward recomputes each
// chunk's logits (FlashAttention's trade: one more head product, no [B·T, V] tensor on the tape) and adds the
// chunk's share into dhidden and writes its rows of dweight; logits that fit in one chunk are kept instead (the
// recomputation costs 1.6x the logits path's time on lavapipe at B8 T64 C256 V8192: bench/RESULTS.md). A weight
// larger than one binding is bound chunk by chunk.
import { gradEnabled, noGrad, record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { bindingWindows, deviceLimits, elementwiseShape, launch, logitRowThreads } from '../launch.ts';
import { Tensor, shapeString, tidy } from '../tensor.ts';
import { linear, matmul, matmulInto } from './matmul.ts';
import { writeSlice } from './shape.ts';
import { accumulateCall } from '../../kernels/accumulate.ts';
import { bytesPerElement, isFloatDType } from '../../kernels/dtype.ts';
import { headChunkRows, tokenLogprobsBackwardCall, tokenLogprobsCall, type VocabChunk } from '../../kernels/token_logprobs.ts';

export interface HeadOptions {
  /** Vocabulary rows per chunk; by default kernels/token_logprobs.ts headChunkRows (logits of 32 MiB a chunk at most). */
  chunkRows?: number;
}

/** The vocabulary chunks of the head over `tokens` positions. */
export function headChunks(tokens: number, weight: Tensor, opts: HeadOptions = {}): VocabChunk[] {
  const [vocab, hidden] = weight.shape;
  const rows = opts.chunkRows ?? headChunkRows(deviceLimits(), tokens, vocab, hidden).rows;
  if (!(Number.isInteger(rows) && rows >= 1)) throw new GpuError(`headTokenLogprobs: chunkRows must be a positive integer, got ${rows}`);
  const chunks: VocabChunk[] = [];
  for (let first = 0; first < vocab; first += rows) chunks.push({ first, rows: Math.min(rows, vocab - first) });
  return chunks;
}

/**
 * logp[b, t] = log p(ids[b, t] | ids[b, :t]) f32 [B, T] (logp[b, 0] = 0) from hidden states [B, T, C] (f32, or an
 * f16 castF16 copy: mixed precision) and the head's weight [V, C] (f32, f16/bf16 when frozen, or a castF16 copy):
 * tokenLogprobs(linear(hidden, weight), ids) without the logits.
 * An id outside [0, V) gives NaN.
 */
export function headTokenLogprobs(hidden: Tensor, weight: Tensor, ids: Tensor, opts: HeadOptions = {}): Tensor {
  const what = `headTokenLogprobs(hidden ${shapeString(hidden.shape)}, weight ${weight.dtype} ${shapeString(weight.shape)}, ids ${ids.dtype} ${shapeString(ids.shape)})`;
  if ((hidden.dtype !== 'f32' && hidden.dtype !== 'f16') || hidden.rank !== 3) throw new GpuError(`${what}: hidden must be f32 or f16 [B, T, C]`);
  const [B, T, C] = hidden.shape;
  if (!isFloatDType(weight.dtype) || weight.rank !== 2 || weight.shape[1] !== C || weight.shape[0] < 1) throw new GpuError(`${what}: weight must be [V, C] with the hidden states' C`);
  if (ids.dtype !== 'i32' || ids.rank !== 2 || ids.shape[0] !== B || ids.shape[1] !== T) throw new GpuError(`${what}: ids must be i32 [B, T] with the hidden states' B and T`);
  const V = weight.shape[0], N = B * T;
  const chunks = headChunks(N, weight, opts);
  const rowsOf = (c: VocabChunk) => (chunks.length === 1 ? weight : weight.rows(c.first, c.rows));
  const flat = hidden.reshape([N, C]);
  const state = chunks.length > 1 ? Tensor.empty([3 * N], 'f32', 'headTokenLogprobs state') : null; // between chunks
  const logp = Tensor.empty([B, T], 'f32', 'headTokenLogprobs');
  const lse = Tensor.empty([B, T], 'f32', 'headTokenLogprobs lse');
  // Logits that fit one chunk are kept for the backward, as the logits path would; chunks are recomputed there.
  const kept = noGrad(() => {
    let logits: Tensor | null = null;
    for (const c of chunks) {
      logits = tidy(() => {
        const x = linear(flat, rowsOf(c));
        launch(tokenLogprobsCall(deviceLimits(), B, T, V, c, logitRowThreads()), [x, ids], [state, logp, lse]);
        return chunks.length === 1 ? x : null;
      });
    }
    return logits;
  });
  state?.dispose();
  flat.dispose();
  // forward was logp[b, t] = x[b, t - 1, ids[b, t]] - lse[b, t] with x = hidden · weightᵀ, so per chunk
  // dx = g · (onehot - softmax), dhidden += dx · weight_chunk and dweight_chunk = dxᵀ · hidden.
  record('headTokenLogprobs', [hidden, weight, ids], [logp], [hidden, weight, ids, lse, ...(kept ? [kept] : [])], ([g]) => {
    const h = hidden.reshape([N, C]);
    const dweight = weight.requiresGrad ? Tensor.empty([V, C], 'f32', 'headTokenLogprobsBackward') : null;
    let dhidden: Tensor | null = null;
    for (const c of chunks) {
      dhidden = tidy(() => {
        const w = rowsOf(c);
        const dx = Tensor.empty([N, c.rows], 'f32', 'headTokenLogprobsBackward');
        launch(tokenLogprobsBackwardCall(deviceLimits(), B, T, V, c, elementwiseShape()), [kept ?? linear(h, w), ids, lse, g!], [dx]);
        if (dweight) matmulInto(chunks.length === 1 ? dweight : dweight.rows(c.first, c.rows), dx, h, { transA: true });
        if (!hidden.requiresGrad) return null;
        const part = matmul(dx, w); // [N, C]
        if (!dhidden) return part;
        launch({ ...accumulateCall(deviceLimits(), N * C, elementwiseShape()), op: 'headTokenLogprobsBackward' }, [part], [dhidden]);
        return dhidden;
      });
    }
    return [dhidden ? dhidden.reshape([B, T, C]) : null, dweight, null];
  });
  lse.dispose(); // the tape retained it (and the kept logits) when it recorded
  kept?.dispose();
  return logp;
}

/**
 * The head's logits hidden [..., C] · weightᵀ -> [..., V], as linear; a weight larger than one binding is applied
 * window by window into the logits' columns, off the tape (generation and evaluation: training reads the head
 * through headTokenLogprobs).
 */
export function headLogits(hidden: Tensor, weight: Tensor): Tensor {
  const [V, C] = weight.shape;
  const windows = bindingWindows(V, bytesPerElement(weight.dtype) * C);
  if (windows.length === 1) return linear(hidden, weight);
  if (gradEnabled() && (hidden.requiresGrad || weight.requiresGrad))
    throw new GpuError(`headLogits: the head ${shapeString(weight.shape)} exceeds one binding and its logits have no backward; train through headTokenLogprobs (CausalLM.tokenLogprobs)`);
  const M = hidden.numel / C;
  const out = Tensor.empty([...hidden.shape.slice(0, -1), V], 'f32', 'headLogits');
  const rows = out.reshape([M, V]), flat = hidden.reshape([M, C]);
  for (const w of windows) tidy(() => writeSlice(rows, linear(flat, weight.rows(w.first, w.count)), 1, w.first));
  rows.dispose();
  flat.dispose();
  return out;
}
