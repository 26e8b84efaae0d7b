// IRFT's objective on one micro-batch of pairs (demonstration, generation): the implicit reward of a sequence
// is β·(logp_π - logp_ref), the margin of pair b is
//   m_b = β·[(logp_π(demo_b) - ref(demo_b)) - (logp_π(gen_b) - ref(gen_b))],
// and the loss is Σ_b ℓ(m_b) / totalPairs with ℓ one of
//   sigmoid  -log σ(m)      (SPIN, DPO)
//   hinge    relu(1 - m)    (SLiC)
//   linear   -m
// Log-probs are summed over response tokens. The reference log-probs come from the host: they are computed
// once per stage (train/irft_stage.ts), so no reference model is in memory while the policy trains.
import { noGrad } from '../../engine/autodiff.ts';
import { Tensor } from '../../engine/tensor.ts';
import { add, fill, scale, sub, sumLastDim } from '../../engine/ops/elementwise.ts';
import { relu } from '../../engine/ops/activations.ts';
import { narrow } from '../../engine/ops/shape.ts';
import type { CausalLM } from '../../models/causal_lm.ts';
import { sequenceLogprobs } from './logprobs.ts';
import { implicitRewards, preferenceLoss } from './preference.ts';

export type IrftLossType = 'sigmoid' | 'hinge' | 'linear';
export const IRFT_LOSS_TYPES: readonly IrftLossType[] = ['sigmoid', 'hinge', 'linear'];

/** One training pair: a prompt, its demonstration and the policy's generation (token ids, no padding). */
export interface IrftPair { prompt: number[]; demo: number[]; gen: number[] }

/**
 * Pairs as one batch of 2B rows [demo_0 .. demo_{B-1}; gen_0 .. gen_{B-1}], each row prompt + response,
 * right-padded with 0 to the longest: ids [2B, T] and mask [2B, T] = 1 on the response tokens only.
 */
export interface PairBatch { ids: Int32Array; mask: Float32Array; pairs: number; T: number }

export function pairBatch(pairs: readonly IrftPair[]): PairBatch {
  if (pairs.length === 0) throw new Error('pairBatch: no pairs');
  const rows = [...pairs.map((p) => [p.prompt, p.demo]), ...pairs.map((p) => [p.prompt, p.gen])];
  const T = Math.max(...rows.map(([x, y]) => x.length + y.length));
  const ids = new Int32Array(rows.length * T), mask = new Float32Array(rows.length * T);
  rows.forEach(([x, y], r) => {
    if (x.length === 0 || y.length === 0) throw new Error(`pairBatch: pair ${r % pairs.length} has an empty ${x.length === 0 ? 'prompt' : 'response'}`);
    ids.set(x, r * T);
    ids.set(y, r * T + x.length);
    mask.fill(1, r * T + x.length, r * T + x.length + y.length);
  });
  return { ids, mask, pairs: pairs.length, T };
}

/** Sequence log-probs [2B] of a pair batch under the model (demonstrations, then generations). */
export function pairLogprobs(model: CausalLM, batch: PairBatch): Tensor {
  const ids = Tensor.fromArray(batch.ids, [2 * batch.pairs, batch.T], 'i32');
  const mask = Tensor.fromArray(batch.mask, [2 * batch.pairs, batch.T]);
  const logp = sequenceLogprobs(model.tokenLogprobs(ids), mask); // [2B]
  ids.dispose();
  mask.dispose();
  return logp;
}

/**
 * Σ_b ℓ(m_b) / totalPairs from sequence log-probs [2B] (policy, differentiable; reference, constant). Also returns
 * the margins m [B], off the tape. sigmoid reuses preferenceLoss (the fused, stable cross-entropy), whose mean
 * over the B pairs is rescaled to the share of totalPairs.
 */
export function irftObjective(policyLogp: Tensor, refLogp: Tensor, beta: number, lossType: IrftLossType, totalPairs: number): { loss: Tensor; margin: Tensor } {
  if (!(beta > 0)) throw new Error(`irftObjective: beta ${beta} must be positive`);
  const rewards = implicitRewards(policyLogp, refLogp, beta); // [2B]
  const B = rewards.numel / 2;
  if (!(Number.isInteger(totalPairs) && totalPairs >= B)) throw new Error(`irftObjective: totalPairs ${totalPairs} must be an integer >= the micro-batch's ${B} pairs`);
  const margin = sub(narrow(rewards, 0, 0, B), narrow(rewards, 0, B, B)); // [B]
  let loss: Tensor;
  switch (lossType) {
    case 'sigmoid': loss = scale(preferenceLoss(rewards), B / totalPairs); break;
    case 'hinge': loss = sumLastDim(relu(add(fill([B], 1), scale(margin, -1))), false, 1 / totalPairs, 'irftHingeLoss'); break;
    case 'linear': loss = sumLastDim(margin, false, -1 / totalPairs, 'irftLinearLoss'); break;
    default: throw new Error(`irftObjective: unknown loss ${JSON.stringify(lossType)} (known: ${IRFT_LOSS_TYPES.join(', ')})`);
  }
  return { loss, margin: noGrad(() => scale(margin, 1)) };
}

/** What a micro-batch computed besides its loss, for metrics: policy log-probs [2B] and margins [B]. */
export interface IrftMicroValues { policyLogp: Tensor; margin: Tensor }

/**
 * A micro-batch's loss for TrainStep: one forward over the pair batch's 2B rows, the reference log-probs refLogp
 * [2B] (the same order: demonstrations, then generations) from the host. `values`, when given, receives the
 * policy log-probs and margins (inside the step's tidy: keep() them to read them afterwards).
 */
export function irftMicroLoss(policy: CausalLM, batch: PairBatch, refLogp: ArrayLike<number>, beta: number, lossType: IrftLossType, totalPairs: number, values?: (v: IrftMicroValues) => void): Tensor {
  if (refLogp.length !== 2 * batch.pairs) throw new Error(`irftMicroLoss: ${refLogp.length} reference log-probs for ${batch.pairs} pairs (2 per pair)`);
  const policyLogp = pairLogprobs(policy, batch);
  const ref = Tensor.fromArray(Float32Array.from(refLogp), [2 * batch.pairs]);
  const { loss, margin } = irftObjective(policyLogp, ref, beta, lossType, totalPairs);
  values?.({ policyLogp, margin });
  return loss;
}
