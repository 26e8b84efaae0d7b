// Pairwise objectives: the Bradley-Terry loss of a reward model, and IRFT's implicit-reward loss, which is the
// same loss on the rewards β·log(π / π_ref) of a policy against a frozen reference.
import { noGrad } from '../../engine/autodiff.ts';
import { Tensor } from '../../engine/tensor.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { scale, sub } from '../../engine/ops/elementwise.ts';
import { narrow, permute, reshape } from '../../engine/ops/shape.ts';

/**
 * mean_b -log σ(chosen[b] - rejected[b]) from rewards [2B]: the chosen sequences' rewards, then the rejected
 * ones'. -log σ(a - b) is the cross-entropy of softmax([a, b]) against class 0, so this is the fused
 * cross-entropy on [B, 2] rows (numerically stable for any margin).
 */
export function preferenceLoss(rewards: Tensor): Tensor {
  const B = rewards.numel / 2;
  const pairs = permute(reshape(rewards, [2, B]), [1, 0]); // [B, 2]: (chosen, rejected)
  const chosen = Tensor.fromArray(new Int32Array(B), [B], 'i32');
  const loss = crossEntropy(pairs, chosen);
  chosen.dispose();
  return loss;
}

/** The implicit rewards β·(logp_π - logp_ref) [2B] of sequence log-probs [2B] (demonstrations, then generations). */
export function implicitRewards(policyLogp: Tensor, refLogp: Tensor, beta: number): Tensor {
  return scale(sub(policyLogp, refLogp), beta);
}

/**
 * IRFT: margin[b] = β·[(logp_π(demo) - logp_ref(demo)) - (logp_π(gen) - logp_ref(gen))] and
 * loss = mean_b -log σ(margin[b]), from sequence log-probs [2B] (the B demonstrations, then the B generations).
 * The loss is preferenceLoss on the implicit rewards, since r_demo - r_gen is the margin; the margin [B] is
 * returned for reporting, off the tape.
 */
export function irftLoss(policyLogp: Tensor, refLogp: Tensor, beta: number): { loss: Tensor; margin: Tensor } {
  const rewards = implicitRewards(policyLogp, refLogp, beta); // [2B]
  const B = rewards.numel / 2;
  const margin = noGrad(() => sub(narrow(rewards, 0, 0, B), narrow(rewards, 0, B, B))); // [B]
  return { loss: preferenceLoss(rewards), margin };
}
