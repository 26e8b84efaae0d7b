// Supervised fine-tuning: the next-token loss of a causal LM (transformers' loss with labels = input_ids), and the
// response-token loss of one micro-batch under gradient accumulation.
import { Tensor } from '../../engine/tensor.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { sequenceLogprobs } from './logprobs.ts';

/** transformers' ignore_index: positions that predict nothing. */
export const IGNORE_INDEX = -100;

/**
 * Mean next-token cross-entropy: logits [B, T, V] at position t predict ids[:, t + 1]; `ids` are the model's
 * input tokens on the host, [B, T] row-major. The last position of each row predicts nothing.
 */
export function nextTokenLoss(logits: Tensor, ids: Int32Array): Tensor {
  const [B, T, V] = logits.shape;
  const targets = Tensor.fromArray(Int32Array.from(ids, (_, i) => (i % T === T - 1 ? IGNORE_INDEX : ids[i + 1])), [B * T], 'i32');
  const loss = crossEntropy(reshape(logits, [B * T, V]), targets, { ignoreIndex: IGNORE_INDEX });
  targets.dispose();
  return loss;
}

/**
 * One micro-batch's share of the SFT loss: (Σ over its response tokens of -log p(ids[b, t] | ids[b, :t])) /
 * totalResponseTokens, from logits [B, T, V] for ids i32 [B, T] (position t - 1 predicts token t) and
 * responseMask f32 [B, T] (1 on response tokens; position 0 never counts). totalResponseTokens counts the response
 * tokens of the whole optimizer batch, so the micro-batches' losses add up to the global token mean, as
 * transformers >= 4.46 computes it under gradient accumulation. Returns a scalar, differentiable in the logits.
 */
export function sftMicroLoss(logits: Tensor, ids: Tensor, responseMask: Tensor, totalResponseTokens: number): Tensor {
  if (!(Number.isInteger(totalResponseTokens) && totalResponseTokens > 0)) throw new Error(`sftMicroLoss: totalResponseTokens ${totalResponseTokens} must be a positive integer`);
  return sumLastDim(sequenceLogprobs(logits, ids, responseMask), false, -1 / totalResponseTokens, 'sftLoss'); // []
}
