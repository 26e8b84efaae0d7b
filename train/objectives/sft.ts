// Supervised fine-tuning: the next-token loss of a causal LM (transformers' loss with labels = input_ids), and the
// response-token loss of one micro-batch under gradient accumulation.
import type { Tensor } from '../../engine/tensor.ts';
import { sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { sequenceLogprobs } from './logprobs.ts';

/**
 * Mean next-token cross-entropy (transformers' loss with labels = input_ids) from the per-token log-probs
 * logp [B, T] of the input ids (CausalLM.tokenLogprobs, or tokenLogprobs of the logits): -Σ logp / (B·(T - 1)),
 * every position but each row's last predicting the token after it (logp[b, 0] is 0).
 */
export function nextTokenLoss(tokenLogp: Tensor): Tensor {
  const [B, T] = tokenLogp.shape;
  if (T < 2) throw new Error(`nextTokenLoss: rows of ${T} token predict nothing`);
  return sumLastDim(reshape(tokenLogp, [B * T]), false, -1 / (B * (T - 1)), 'nextTokenLoss'); // []
}

/**
 * One micro-batch's share of the SFT loss: (Σ over its response tokens of -log p(ids[b, t] | ids[b, :t])) /
 * totalResponseTokens, from the per-token log-probs [B, T] of the ids (position t - 1 predicts token t) and
 * responseMask f32 [B, T] (1 on response tokens; position 0 never counts). totalResponseTokens counts the response
 * tokens of the whole optimizer batch, so the micro-batches' losses add up to the global token mean, as
 * transformers >= 4.46 computes it under gradient accumulation. Returns a scalar, differentiable.
 */
export function sftMicroLoss(tokenLogp: Tensor, responseMask: Tensor, totalResponseTokens: number): Tensor {
  if (!(Number.isInteger(totalResponseTokens) && totalResponseTokens > 0)) throw new Error(`sftMicroLoss: totalResponseTokens ${totalResponseTokens} must be a positive integer`);
  return sumLastDim(sequenceLogprobs(tokenLogp, responseMask), false, -1 / totalResponseTokens, 'sftLoss'); // []
}
