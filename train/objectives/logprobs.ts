// Log-likelihoods of token sequences under a causal LM, for the training objectives: per token (CausalLM.tokenLogprobs,
// the fused head; or tokenLogprobs of logits), and summed over each sequence's response (the tokens the model is
// scored on; the prompt and padding are masked out).
import type { Tensor } from '../../engine/tensor.ts';
import { mul, sumLastDim } from '../../engine/ops/elementwise.ts';
import { tokenLogprobs } from '../../engine/ops/token_logprobs.ts';

export { tokenLogprobs };

/**
 * log p(response | prompt) per sequence: Σ_t mask[b, t] · logp[b, t] over t >= 1, from the per-token log-probs
 * logp [B, T] of ids [B, T] (logp[b, t] = log p(ids[b, t] | ids[b, :t])); mask f32 [B, T] is 1 where token t
 * belongs to the response (mask[b, 0] is ignored: the first token has no prediction). Returns [B], differentiable.
 */
export function sequenceLogprobs(tokenLogp: Tensor, responseMask: Tensor): Tensor {
  return sumLastDim(mul(tokenLogp, responseMask)); // [B]
}
