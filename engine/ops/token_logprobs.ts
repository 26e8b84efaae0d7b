// Per-token log-likelihoods under a causal LM: logp[b, t] = log p(ids[b, t] | ids[b, :t]) from the logits
// [B, T, V] the model returned for ids [B, T] (position t - 1 predicts token t; logp[b, 0] = 0), fused:
// one pass over each row of logits computes its logsumexp and picks the target. The backward recomputes the
// softmax from the saved logsumexp instead of keeping a [B, T, V] gradient alive on the tape. Training reads the
// model through CausalLM.tokenLogprobs (lm_head.ts: the same kernels over vocabulary chunks, without the logits).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch, logitRowThreads } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { tokenLogprobsBackwardCall, tokenLogprobsCall } from '../../kernels/token_logprobs.ts';

/** logits f32 [B, T, V], ids i32 [B, T] -> logp f32 [B, T]; an id outside [0, V) gives NaN. */
export function tokenLogprobs(logits: Tensor, ids: Tensor): Tensor {
  const what = `tokenLogprobs(logits ${logits.dtype} ${shapeString(logits.shape)}, ids ${ids.dtype} ${shapeString(ids.shape)})`;
  if (logits.dtype !== 'f32' || logits.rank !== 3 || logits.shape[2] < 1) throw new GpuError(`${what}: logits must be f32 [B, T, V] with V >= 1`);
  const [B, T, V] = logits.shape;
  if (ids.dtype !== 'i32' || ids.rank !== 2 || ids.shape[0] !== B || ids.shape[1] !== T) throw new GpuError(`${what}: ids must be i32 [B, T] with the logits' B and T`);
  const logp = Tensor.empty([B, T], 'f32', 'tokenLogprobs');
  const lse = Tensor.empty([B, T], 'f32', 'tokenLogprobs lse');
  launch(tokenLogprobsCall(deviceLimits(), B, T, V, { first: 0, rows: V }, logitRowThreads()), [logits, ids], [null, logp, lse]); // one chunk: no state
  // forward was logp[b, t] = x[b, t - 1, ids[b, t]] - lse[b, t], so dx[b, t - 1] = g[b, t] · (onehot(ids[b, t]) - softmax).
  record('tokenLogprobs', [logits, ids], [logp], [logits, ids, lse], ([g]) => {
    const dlogits = Tensor.empty(logits.shape, 'f32', 'tokenLogprobsBackward');
    launch(tokenLogprobsBackwardCall(deviceLimits(), B, T, V, { first: 0, rows: V }, elementwiseShape()), [logits, ids, lse, g!], [dlogits]);
    return [dlogits, null];
  });
  lse.dispose(); // the tape retained it when it recorded
  return logp;
}
