// RFT: an explicit reward model trained on (prompt + demonstration) over (prompt + generation), then the policy
// optimised against it with RLOO (Ahmadian et al. 2024; TRL's RLOOTrainer at ratio 1):
//
//   reward model   L_rm = mean_b -log σ(r(x_b, demo_b) - r(x_b, gen_b))
//   per sample     KL_i = Σ_t (logp_π - logp_ref) over response tokens, at rollout time (detached)
//                  R_i  = r(x_i, y_i) - β_KL · KL_i                              (detached)
//                  A_i  = R_i - mean of R_j over the other k - 1 samples of its prompt
//   policy         L_π  = -mean_i A_i · logp_π(y_i | x_i)
//
// Samples are prompt-major: sample i belongs to prompt floor(i / k). The reference is the initial policy and stays
// fixed; its log-probs are computed once per rollout batch (rolloutScores).
import { noGrad } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { mul, scale, sumLastDim } from '../../engine/ops/elementwise.ts';
import type { CausalLM } from '../../models/causal_lm.ts';
import type { RewardModel } from '../../models/reward.ts';
import { sequenceLogprobs } from './logprobs.ts';
import { preferenceLoss } from './preference.ts';

/** Rows of a then rows of b, as one batch. */
function stacked<A extends Int32Array | Float32Array>(a: A, b: A): A {
  const out = new (a.constructor as new (n: number) => A)(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * A micro-batch's share of the reward model's loss: Σ_b -log σ(r(demo_b) - r(gen_b)) / totalPairs, from
 * demoIds and genIds [B, T] (prompt + response, right-padded with the pad id), one forward over both.
 */
export function rewardMicroLoss(model: RewardModel, demoIds: Int32Array, genIds: Int32Array, T: number, totalPairs: number): Tensor {
  if (demoIds.length !== genIds.length || demoIds.length % T !== 0) throw new Error(`rewardMicroLoss: demoIds (${demoIds.length}) and genIds (${genIds.length}) must both be [B, ${T}]`);
  const B = demoIds.length / T;
  if (!(Number.isInteger(totalPairs) && totalPairs >= B)) throw new Error(`rewardMicroLoss: totalPairs ${totalPairs} must be an integer >= the micro-batch's ${B} pairs`);
  const rewards = model.forward(stacked(demoIds, genIds), T); // [2B]
  return scale(preferenceLoss(rewards), B / totalPairs);
}

/** A_i = R_i - mean of R_j over the other k - 1 samples of the same prompt (prompt-major, k >= 2). */
export function rlooAdvantages(R: readonly number[] | Float64Array, k: number): Float64Array {
  if (!(Number.isInteger(k) && k >= 2)) throw new Error(`rlooAdvantages: k ${k} must be an integer >= 2 (the baseline is the other samples of the prompt)`);
  if (R.length % k !== 0) throw new Error(`rlooAdvantages: ${R.length} returns are not whole groups of k = ${k}`);
  const A = new Float64Array(R.length);
  for (let g = 0; g < R.length; g += k) {
    let sum = 0;
    for (let j = g; j < g + k; j++) sum += R[j];
    for (let j = g; j < g + k; j++) A[j] = R[j] - (sum - R[j]) / (k - 1);
  }
  return A;
}

/** KL_i = logp_π(y_i) - logp_ref(y_i) (sequence sums) and R_i = reward_i - β_KL · KL_i, on the host. */
export function rlooReturns(rewards: ArrayLike<number>, policyLogp: ArrayLike<number>, refLogp: ArrayLike<number>, betaKl: number): { kl: Float64Array; R: Float64Array } {
  const n = rewards.length;
  if (policyLogp.length !== n || refLogp.length !== n) throw new Error(`rlooReturns: ${n} rewards, ${policyLogp.length} policy and ${refLogp.length} reference log-probs`);
  const kl = Float64Array.from({ length: n }, (_, i) => policyLogp[i] - refLogp[i]);
  return { kl, R: Float64Array.from({ length: n }, (_, i) => rewards[i] - betaKl * kl[i]) };
}

/** Samples as a right-padded batch: ids i32 [N, T] (prompt + response) and mask [N, T] = 1 on the response. */
export interface SampleBatch { ids: Int32Array; mask: Float32Array; T: number }

/**
 * A micro-batch's share of the RLOO policy loss: -Σ_i A_i · logp_π(y_i | x_i) / totalSamples, with the advantages
 * (detached, from the host) of its samples. Returns a scalar, differentiable in the policy.
 */
export function rftPolicyMicroLoss(policy: CausalLM, batch: SampleBatch, advantages: ArrayLike<number>, totalSamples: number): Tensor {
  const N = batch.ids.length / batch.T;
  if (advantages.length !== N) throw new Error(`rftPolicyMicroLoss: ${advantages.length} advantages for ${N} samples`);
  if (!(Number.isInteger(totalSamples) && totalSamples >= N)) throw new Error(`rftPolicyMicroLoss: totalSamples ${totalSamples} must be an integer >= the micro-batch's ${N} samples`);
  const ids = Tensor.fromArray(batch.ids, [N, batch.T], 'i32'), mask = Tensor.fromArray(batch.mask, [N, batch.T]);
  const a = Tensor.fromArray(Float32Array.from(advantages), [N]);
  const logp = sequenceLogprobs(policy.tokenLogprobs(ids), mask); // [N]
  ids.dispose();
  mask.dispose();
  return sumLastDim(mul(logp, a), false, -1 / totalSamples, 'rlooLoss'); // []
}

/**
 * Sequence log-probs [N] of a sample batch under a model, without gradients, on the host, charged to `phase`: the
 * audit's 'reference' for a frozen model, 'policy-forward' for the policy scoring its own samples (train/audit_model.ts).
 */
export async function sampleLogprobs(model: CausalLM, batch: SampleBatch, phase = 'reference'): Promise<Float32Array> {
  const N = batch.ids.length / batch.T;
  const logp = tidy(() => ledger.inPhase(phase, () => noGrad(() => {
    const ids = Tensor.fromArray(batch.ids, [N, batch.T], 'i32'), mask = Tensor.fromArray(batch.mask, [N, batch.T]);
    return sequenceLogprobs(model.tokenLogprobs(ids), mask);
  })).keep());
  try { return (await logp.toArray()) as Float32Array; } finally { logp.dispose(); }
}

/** Rewards [N] of a sample batch (read at each row's last real token), without gradients, on the host; charged to reward-forward. */
export async function sampleRewards(model: RewardModel, batch: SampleBatch): Promise<Float32Array> {
  const r = tidy(() => ledger.inPhase('reward-forward', () => noGrad(() => model.forward(batch.ids, batch.T))).keep());
  try { return (await r.toArray()) as Float32Array; } finally { r.dispose(); }
}

/** Everything RLOO needs of a rollout batch, detached: per sample logp_π, logp_ref, reward, KL, R and A. */
export interface RlooScores { logp: Float32Array; refLogp: Float32Array; rewards: Float32Array; kl: Float64Array; R: Float64Array; A: Float64Array }

/**
 * Scores a rollout batch: the policy's log-probs now, the reference's (pass refLogp when computed already for
 * this batch), the rewards, then KL, R and the RLOO advantages with k samples per prompt.
 */
export async function rolloutScores(policy: CausalLM, reference: CausalLM | Float32Array, rewardModel: RewardModel, batch: SampleBatch, k: number, betaKl: number): Promise<RlooScores> {
  // All three recorded before the first read-back: the device runs them back to back.
  const [logp, refLogp, rewards] = await Promise.all([sampleLogprobs(policy, batch, 'policy-forward'),
    reference instanceof Float32Array ? reference : sampleLogprobs(reference, batch, 'reference'), sampleRewards(rewardModel, batch)]);
  const { kl, R } = rlooReturns(rewards, logp, refLogp, betaKl);
  return { logp, refLogp, rewards, kl, R, A: rlooAdvantages(R, k) };
}
