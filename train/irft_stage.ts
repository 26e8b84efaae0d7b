// One IRFT stage (SPIN is one stage), as a library the training loop drives:
//
//   generatePairs       one response per prompt of the stage's chunk with the current policy (batched; greedy by
//                       default), and the pairs whose generation equals the demonstration dropped and counted
//   referenceLogprobs   logp_ref of every demonstration and generation, ONCE at the stage start (ledger phase
//                       `reference`), with the policy itself as the reference: the reference is the policy at the
//                       stage start, so no second model is in memory; the values stay on the host
//   irftStageMicros     TrainStep's micro-batch losses on the stage's pairs (train/objectives/irft.ts)
//   endIrftStage        with LoRA: the adapter merged into the base (phase `merge`) and a fresh one attached
//
// The stage's generations and reference log-probs are IrftStageState: plain JSON, which a checkpoint saves so
// that a run resumed mid-stage trains on the same pairs without generating again.
import { noGrad } from '../engine/autodiff.ts';
import { ledger } from '../engine/ledger.ts';
import { tidy } from '../engine/tensor.ts';
import type { CausalLM, GenerationOptions } from '../models/causal_lm.ts';
import type { LoraConfig } from '../models/lora.ts';
import { attachLora, mergeLora } from '../models/peft.ts';
import { rollout } from '../models/rollout.ts';
import { irftMicroLoss, pairBatch, pairLogprobs, type IrftLossType, type IrftMicroValues, type IrftPair } from './objectives/irft.ts';

/** A prompt and its demonstration (token ids). */
export interface IrftExample { prompt: number[]; demo: number[] }

export interface PairGenerationOptions extends Omit<GenerationOptions, 'rowIds' | 'decoder' | 'stopStrings'> {
  /** Prompts generated together (default: all in one batch). */
  batchSize?: number;
}

export interface GeneratedPairs {
  pairs: IrftPair[];
  /** For each pair, the index of its example in the stage's chunk. */
  examples: number[];
  /** Examples whose generation equals the demonstration token for token: no signal, dropped. */
  dropped: number;
}

/**
 * Generates one response per example's prompt (greedy unless opts sets a temperature; the GPU sampler, so that
 * a prompt's tokens do not depend on its batch) and pairs it with the demonstration; identical pairs are dropped.
 */
export async function generatePairs(policy: CausalLM, examples: readonly IrftExample[], opts: PairGenerationOptions): Promise<GeneratedPairs> {
  const { batchSize = Math.max(1, examples.length), ...generation } = opts;
  const { rows } = await rollout(policy, examples.map((e) => e.prompt), { ...generation, batchSize });
  const out: GeneratedPairs = { pairs: [], examples: [], dropped: 0 };
  rows.forEach((row, i) => {
    const { prompt, demo } = examples[i];
    if (row.tokens.length === demo.length && row.tokens.every((t, j) => t === demo[j])) { out.dropped++; return; }
    out.pairs.push({ prompt: [...prompt], demo: [...demo], gen: [...row.tokens] });
    out.examples.push(i);
  });
  return out;
}

/** Reference log-probs of every pair, demonstration and generation, on the host. */
export interface ReferenceLogprobs { demo: number[]; gen: number[] }

/**
 * logp(demo) and logp(gen) of each pair under `model` (the policy at the stage start), summed over response
 * tokens, in batches of `batchSize` pairs (one forward over [demo rows; gen rows] each), without gradients,
 * charged to the ledger phase `reference`.
 */
export async function referenceLogprobs(model: CausalLM, pairs: readonly IrftPair[], batchSize = pairs.length): Promise<ReferenceLogprobs> {
  const out: ReferenceLogprobs = { demo: [], gen: [] };
  for (let first = 0; first < pairs.length; first += batchSize) {
    const batch = pairBatch(pairs.slice(first, first + batchSize));
    const logp = tidy(() => ledger.inPhase('reference', () => noGrad(() => pairLogprobs(model, batch))).keep());
    const values = await logp.toArray();
    logp.dispose();
    out.demo.push(...values.subarray(0, batch.pairs));
    out.gen.push(...values.subarray(batch.pairs));
  }
  return out;
}

/** What a checkpoint saves of a stage under way: its pairs and their reference log-probs. */
export interface IrftStageState {
  /** The stage, from 1. */
  stage: number;
  pairs: IrftPair[];
  /** Index in the stage's chunk of each pair's example. */
  examples: number[];
  dropped: number;
  reference: ReferenceLogprobs;
}

/** Generation and the reference pass of a stage's start. */
export async function startIrftStage(policy: CausalLM, stage: number, examples: readonly IrftExample[], opts: PairGenerationOptions & { referenceBatchSize?: number }): Promise<IrftStageState> {
  const { referenceBatchSize, ...generation } = opts;
  const g = await generatePairs(policy, examples, generation);
  const reference = g.pairs.length > 0 ? await referenceLogprobs(policy, g.pairs, referenceBatchSize) : { demo: [], gen: [] };
  return { stage, pairs: g.pairs, examples: g.examples, dropped: g.dropped, reference };
}

export class IrftStateError extends Error {}

/** A stage state read back from a checkpoint's JSON, checked; `where` names the file in errors. */
export function parseIrftStageState(json: unknown, where: string): IrftStageState {
  const fail = (what: string): never => { throw new IrftStateError(`${where}: IRFT stage state: ${what}`); };
  const o = json as Partial<IrftStageState> | null;
  if (!o || typeof o !== 'object') fail('must be an object');
  const ids = (v: unknown) => Array.isArray(v) && v.every((t) => Number.isInteger(t) && t >= 0);
  const nums = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!(Number.isInteger(o!.stage) && o!.stage! >= 1)) fail(`stage ${JSON.stringify(o!.stage)} must be a positive integer`);
  if (!(Number.isInteger(o!.dropped) && o!.dropped! >= 0)) fail(`dropped ${JSON.stringify(o!.dropped)} must be a non-negative integer`);
  if (!Array.isArray(o!.pairs)) fail('pairs must be a list');
  o!.pairs!.forEach((p, i) => { if (!p || !ids(p.prompt) || !ids(p.demo) || !ids(p.gen)) fail(`pair ${i} must hold token id lists prompt, demo and gen`); });
  const n = o!.pairs!.length;
  if (!ids(o!.examples) || o!.examples!.length !== n) fail(`examples must list ${n} indices, one per pair`);
  const r = o!.reference;
  if (!r || !nums(r.demo) || !nums(r.gen) || r.demo.length !== n || r.gen.length !== n) fail(`reference must hold ${n} finite demo and gen log-probs`);
  return o as IrftStageState;
}

export interface IrftLossOptions { beta: number; lossType: IrftLossType; /** Pairs per micro-batch (default: all). */ microBatch?: number }

/**
 * TrainStep's micro-batches for one optimizer step over the stage's pairs `rows` (indices; default all): each
 * micro-batch is one forward over its pairs' [demo; gen] rows, its loss scaled to its share of rows.length.
 * `values` receives each micro-batch's log-probs and margins with the indices of its pairs.
 */
export function irftStageMicros(policy: CausalLM, state: IrftStageState, opts: IrftLossOptions, rows: readonly number[] = state.pairs.map((_, i) => i),
  values?: (v: IrftMicroValues, pairs: number[]) => void): (() => ReturnType<typeof irftMicroLoss>)[] {
  if (rows.length === 0) throw new Error('irftStageMicros: no pairs');
  const size = opts.microBatch ?? rows.length;
  const micros: (() => ReturnType<typeof irftMicroLoss>)[] = [];
  for (let first = 0; first < rows.length; first += size) {
    const members = rows.slice(first, first + size);
    const batch = pairBatch(members.map((i) => state.pairs[i]));
    const ref = [...members.map((i) => state.reference.demo[i]), ...members.map((i) => state.reference.gen[i])];
    micros.push(() => irftMicroLoss(policy, batch, ref, opts.beta, opts.lossType, rows.length, values && ((v) => values(v, members))));
  }
  return micros;
}

/**
 * The end of a stage. With LoRA, the adapter is merged into the base (ledger phase `merge`) and a fresh adapter
 * of the same config is attached (from `seed`), so that the next stage's reference, the policy at its start, is
 * the merged model. The caller makes a fresh optimizer over policy.params.entries(). Without LoRA nothing to do.
 */
export async function endIrftStage(policy: CausalLM, seed: number): Promise<LoraConfig | null> {
  if (!policy.lora) return null;
  const config = policy.lora.config;
  await mergeLora(policy);
  attachLora(policy, config, undefined, seed);
  return config;
}
