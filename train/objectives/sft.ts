// Supervised fine-tuning: the next-token loss of a causal LM (transformers' loss with labels = input_ids).
import { Tensor } from '../../engine/tensor.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { reshape } from '../../engine/ops/shape.ts';

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
