// `juice verify DIR`: recompute a reference folder on the GPU and report relative errors as JSON.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { backward, noGrad, zeroGrad } from '../engine/autodiff.ts';
import { initGpu } from '../engine/gpu.ts';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { Tensor, tidy, tidyAsync } from '../engine/tensor.ts';
import { layerNorm, rmsNorm } from '../engine/ops/norms.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { AdamW, makeOptimizer } from '../engine/optim.ts';
import type { ParameterSet } from '../engine/params.ts';
import { attention, attentionWithLse } from '../engine/ops/attention.ts';
import { loadCausalLM } from '../models/causal_lm.ts';
import { loadRewardModel } from '../models/reward.ts';
import { loadLora, mergeLora } from '../models/peft.ts';
import { sequenceLogprobs, tokenLogprobs } from './objectives/logprobs.ts';
import { irftLoss, preferenceLoss } from './objectives/preference.ts';
import { nextTokenLoss, sftMicroLoss } from './objectives/sft.ts';
import type { IrftMicroValues } from './objectives/irft.ts';
import { rewardMicroLoss, rftPolicyMicroLoss, rolloutScores, sampleLogprobs, type SampleBatch } from './objectives/rft.ts';
import { endIrftStage, irftStageMicros, startIrftStage, type IrftExample } from './irft_stage.ts';
import { makeSchedule } from './schedule.ts';
import { TrainStep } from './step.ts';

// Tolerances of the fixtures' README: f32 on the GPU against float64 references.
export const FORWARD_TOL = 1e-5;
export const GRADIENT_TOL = 1e-4;

/**
 * One compared quantity. An `informational` check is reported with its error but always passes (`note` says why
 * it cannot fail the run): rft_step's absolute rewards after the reward step (see verifyRftStep).
 */
export interface Check { name: string; relErr: number; tol: number; pass: boolean; informational?: true; note?: string }
/** A quantity the reference does not hold (a real model's logits come without gradients): listed, not failed. */
export interface Absent { name: string; absent: true }
/**
 * Passes when every check passes and there is at least one; `absent` lists what the reference did not hold, and
 * `exemptions` the elements the training kinds hold to |p - p_ref| <= Σ lr instead of 1e-4 (Rules A and B below).
 */
export interface Report { kind: string; dir: string; pass: boolean; checks: Check[]; absent: Absent[]; exemptions: Exemption[] }

export class VerifyError extends Error {}

export function relativeError(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (ours.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) { const d = ours[i] - ref[i]; num += d * d; den += ref[i] * ref[i]; }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Collects checks; `expect` names the reference tensor it compares against. */
class Checks {
  readonly list: Check[] = [];
  constructor(private readonly ref: SafetensorsFile) {}
  tensor(name: string): Float32Array | Int32Array {
    const d = this.ref.read(name);
    if (d instanceof Uint8Array || d instanceof Float64Array) throw new VerifyError(`${this.ref.path}: tensor '${name}' has dtype ${this.ref.info(name).dtype}, expected F32 or I32`);
    return d;
  }
  shape(name: string): number[] { return this.ref.info(name).shape; }
  upload(name: string, requiresGrad = false, dtype: 'f32' | 'i32' = 'f32'): Tensor {
    const t = Tensor.fromArray(this.tensor(name), this.shape(name), dtype);
    t.requiresGrad = requiresGrad;
    return t;
  }
  async expect(name: string, ours: Tensor | ArrayLike<number>, tol: number, label = name): Promise<void> {
    const values = ours instanceof Tensor ? await ours.toArray() : ours;
    const relErr = relativeError(values, this.tensor(name));
    this.list.push({ name: label, relErr, tol, pass: relErr <= tol });
  }
}

type KindRunner = (dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, absent: Absent[], exemptions: Exemption[]) => Promise<Check[]>;

const KINDS: { kind: string; detect: (ref: SafetensorsFile) => boolean; run: KindRunner }[] = [
  { kind: 'irft_loop', detect: (r) => r.has('stage1.gen_tokens') && r.has('stage1.step1.loss'), run: verifyIrftLoop },
  { kind: 'rft_step', detect: (r) => r.has('reward_loss') && r.has('policy_step1.A'), run: verifyRftStep },
  { kind: 'sft', detect: (r) => ['loss', 'grad_norm', 'lr', 'clipped'].every((n) => r.has(n)) && r.names().some((n) => n.startsWith('after_step')), run: verifySft },
  { kind: 'ops', detect: (r) => r.has('layernorm.y') && r.has('ce.logits') && r.has('adamw.p0'), run: verifyOps },
  { kind: 'lora', detect: (r) => r.has('merged_logits') && r.names().some((n) => n.startsWith('step1.base_model.model.')), run: verifyLora },
  { kind: 'causal-lm', detect: (r) => r.has('logits'), run: verifyCausalLM },
  { kind: 'reward', detect: (r) => r.has('reward_demo') && r.has('reward_gen'), run: verifyReward },
  { kind: 'irft', detect: (r) => r.has('policy_logp_demo') && r.has('ref_logp_demo'), run: verifyIrft },
  { kind: 'attention', detect: (r) => ['q', 'k', 'v', 'dout', 'out', 'lse', 'dq', 'dk', 'dv'].every((n) => r.has(n)), run: verifyAttention },
];

async function verifyOps(_dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const c = new Checks(ref);
  const eps = Number(meta.eps ?? 1e-5);

  await tidyAsync(async () => {
    const x = c.upload('x', true), w = c.upload('weight', true), b = c.upload('bias', true), dy = c.upload('dy');
    const y = layerNorm(x, w, b, eps);
    backward(y, dy);
    await c.expect('layernorm.y', y, FORWARD_TOL);
    await c.expect('layernorm.dx', x.grad!, GRADIENT_TOL);
    await c.expect('layernorm.dweight', w.grad!, GRADIENT_TOL);
    await c.expect('layernorm.dbias', b.grad!, GRADIENT_TOL);
    for (const t of [x, w, b]) t.grad!.dispose();
  });

  await tidyAsync(async () => {
    const x = c.upload('x', true), w = c.upload('weight', true), dy = c.upload('dy');
    const y = rmsNorm(x, w, eps);
    backward(y, dy);
    await c.expect('rmsnorm.y', y, FORWARD_TOL);
    await c.expect('rmsnorm.dx', x.grad!, GRADIENT_TOL);
    await c.expect('rmsnorm.dweight', w.grad!, GRADIENT_TOL);
    for (const t of [x, w]) t.grad!.dispose();
  });

  await tidyAsync(async () => {
    const logits = c.upload('ce.logits', true), targets = c.upload('ce.targets', false, 'i32');
    const loss = crossEntropy(logits, targets, { ignoreIndex: -100 });
    backward(loss);
    await c.expect('ce.loss', loss, FORWARD_TOL);
    await c.expect('ce.dlogits', logits.grad!, GRADIENT_TOL);
    logits.grad!.dispose();
  });

  await tidyAsync(async () => {
    const cfg = (meta.adamw ?? {}) as { lr?: number; betas?: [number, number]; eps?: number; weight_decay?: number };
    const p0 = c.tensor('adamw.p0'), grads = c.tensor('adamw.grads'), after = c.tensor('adamw.after');
    const n = p0.length, steps = c.shape('adamw.grads')[0];
    const p = Tensor.fromArray(p0, [n]);
    const opt = new AdamW([{ name: 'p', param: p, decay: true }],
      { lr: cfg.lr ?? 1e-2, betas: cfg.betas ?? [0.9, 0.95], eps: cfg.eps ?? 1e-8, weightDecay: cfg.weight_decay ?? 0.1 });
    for (let s = 0; s < steps; s++) {
      p.grad = Tensor.fromArray(grads.subarray(s * n, (s + 1) * n), [n]);
      opt.step();
      p.grad.dispose();
      p.grad = null;
      // The update after[s] - p0 is what the optimizer computed; the parameter itself hides it behind p0.
      const ours = await p.toArray();
      const refUpdate = after.subarray(s * n, (s + 1) * n).map((v, i) => v - p0[i]);
      const ourUpdate = ours.map((v, i) => v - p0[i]);
      c.list.push(check(`adamw.after[${s}]`, ours, after.subarray(s * n, (s + 1) * n), GRADIENT_TOL));
      c.list.push(check(`adamw.update[${s}]`, ourUpdate, refUpdate, GRADIENT_TOL));
    }
    opt.dispose();
  });
  return c.list;
}

/**
 * Every parameter's gradient against grad.<name>, and no reference gradient without a parameter. The fixtures
 * name GPT-NeoX's output head by transformers' in-memory name lm_head; on disk (and here) it is embed_out.
 */
async function expectGradients(c: Checks, ref: SafetensorsFile, params: ParameterSet): Promise<void> {
  const refName = (name: string) => `grad.${name === 'embed_out.weight' ? 'lm_head.weight' : name}`;
  for (const { name } of params.specs) {
    const grad = params.get(name).grad;
    if (grad && ref.has(refName(name))) await c.expect(refName(name), grad, GRADIENT_TOL);
    else c.list.push({ name: refName(name), relErr: Infinity, tol: GRADIENT_TOL, pass: false });
  }
  const checked = new Set(params.specs.map((s) => refName(s.name)));
  for (const name of ref.names()) if (name.startsWith('grad.') && !checked.has(name)) c.list.push({ name: `${name} (no such parameter)`, relErr: Infinity, tol: GRADIENT_TOL, pass: false });
}

/** Rows of a then rows of b: one batch [2B, T] for the chosen (demonstration) and rejected (generated) sequences. */
function stackRows<A extends Float32Array | Int32Array>(a: A, b: A): A {
  const out = new (a.constructor as new (n: number) => A)(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Exact equality, as a check: relErr 0 or 1. */
function exactCheck(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>): Check {
  const same = ours.length === ref.length && Array.from(ref).every((v, i) => ours[i] === v);
  return { name, relErr: same ? 0 : 1, tol: 0, pass: same };
}

/** expected.json's window (null or a number) and scale ("1/sqrt(D)" or a number). */
async function verifyAttention(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const c = new Checks(ref);
  const D = c.shape('q')[3];
  const window = meta.window === null || meta.window === undefined ? undefined : Number(meta.window);
  if (window !== undefined && !(Number.isInteger(window) && window > 0)) throw new VerifyError(`${join(dir, 'expected.json')}: field 'window' must be null or a positive integer, got ${JSON.stringify(meta.window)}`);
  const scaleValue = meta.scale === undefined || meta.scale === '1/sqrt(D)' ? 1 / Math.sqrt(D) : Number(meta.scale);
  if (!Number.isFinite(scaleValue)) throw new VerifyError(`${join(dir, 'expected.json')}: field 'scale' must be "1/sqrt(D)" or a number, got ${JSON.stringify(meta.scale)}`);
  const opts = { causal: true, window, scale: scaleValue };
  await tidyAsync(async () => {
    const { out, lse } = noGrad(() => attentionWithLse(c.upload('q'), c.upload('k'), c.upload('v'), opts));
    await c.expect('out', out, FORWARD_TOL);
    await c.expect('lse', lse, FORWARD_TOL);
    const q = c.upload('q', true), k = c.upload('k', true), v = c.upload('v', true);
    backward(attention(q, k, v, opts), c.upload('dout'));
    await c.expect('dq', q.grad!, GRADIENT_TOL);
    await c.expect('dk', k.grad!, GRADIENT_TOL);
    await c.expect('dv', v.grad!, GRADIENT_TOL);
    for (const t of [q, k, v]) t.grad!.dispose();
  });
  return c.list;
}

/**
 * A causal LM folder (gpt_neox, mistral) is checked on what its reference holds: logits on input_ids always;
 * the loss, every parameter gradient (grad.*) and greedy tokens with the KV cache (greedy_prompt,
 * greedy_tokens) when present. A real pretrained model's reference may hold logits only.
 */
async function verifyCausalLM(dir: string, ref: SafetensorsFile, _meta: Record<string, unknown>, absent: Absent[]): Promise<Check[]> {
  const c = new Checks(ref);
  if (!ref.has('input_ids')) throw new VerifyError(`${ref.path}: a causal-LM reference needs 'input_ids', the tokens its logits were computed on`);
  if (ref.has('greedy_tokens') !== ref.has('greedy_prompt')) throw new VerifyError(`${ref.path}: greedy_tokens and greedy_prompt come together`);
  const ids = c.tensor('input_ids') as Int32Array;
  const [B, T] = c.shape('input_ids');
  const gradients = ref.names().some((n) => n.startsWith('grad.'));
  let model = loadCausalLM(dir, { frozen: !gradients });
  try {
    await tidyAsync(async () => {
      const idsT = Tensor.fromArray(ids, [B, T], 'i32');
      const logits = model.forward(idsT);
      await c.expect('logits', logits, FORWARD_TOL);
      if (!ref.has('loss') && !gradients) return;
      const loss = nextTokenLoss(tokenLogprobs(logits, idsT));
      if (gradients) backward(loss);
      if (ref.has('loss')) await c.expect('loss', loss, FORWARD_TOL);
    });
    if (!ref.has('loss')) absent.push({ name: 'loss', absent: true });
    if (gradients) await expectGradients(c, ref, model.params);
    else absent.push({ name: 'grad.*', absent: true });
    if (ref.has('greedy_tokens')) {
      const [prompts, P] = c.shape('greedy_prompt');
      const prompt = c.tensor('greedy_prompt') as Int32Array;
      const generated = await model.greedy(Array.from({ length: prompts }, (_, b) => prompt.subarray(b * P, (b + 1) * P)), c.shape('greedy_tokens')[1] - P);
      c.list.push(exactCheck('greedy_tokens', generated.flatMap((row) => [...row]), c.tensor('greedy_tokens')));
    } else absent.push({ name: 'greedy_tokens', absent: true });
    // The layout real checkpoints ship must load to the same model.
    const classic = join(dir, 'config.classic.json');
    if (existsSync(classic)) {
      model.dispose();
      model = loadCausalLM(dir, { configFile: classic, frozen: true });
      await tidyAsync(() => c.expect('logits', noGrad(() => model.forward(Tensor.fromArray(ids, [B, T], 'i32'))), FORWARD_TOL, 'logits (config.classic.json)'));
    }
  } finally {
    model.dispose();
  }
  return c.list;
}

/** A reward model folder: rewards of the demonstrations and generations, the pairwise loss and its gradients. */
async function verifyReward(dir: string, ref: SafetensorsFile): Promise<Check[]> {
  const c = new Checks(ref);
  const [B, T] = c.shape('demo_ids');
  if (c.shape('gen_ids').join() !== [B, T].join()) throw new VerifyError(`${dir}: demo_ids and gen_ids must have one shape`);
  const model = loadRewardModel(dir);
  try {
    await tidyAsync(async () => {
      const rewards = model.forward(stackRows(c.tensor('demo_ids') as Int32Array, c.tensor('gen_ids') as Int32Array), T); // [2B]
      const loss = preferenceLoss(rewards); // mean -log σ(r_demo - r_gen)
      backward(loss);
      const r = await rewards.toArray();
      await c.expect('reward_demo', r.subarray(0, B), FORWARD_TOL);
      await c.expect('reward_gen', r.subarray(B), FORWARD_TOL);
      await c.expect('loss', loss, FORWARD_TOL);
    });
    await expectGradients(c, ref, model.params);
  } finally {
    model.dispose();
  }
  return c.list;
}

/**
 * An implicit-reward folder (policy/ and reference/ models): sequence log-probs of the responses under both,
 * margin = β·((logp_π(demo) - logp_ref(demo)) - (logp_π(gen) - logp_ref(gen))), loss = mean -log σ(margin),
 * and the policy's gradients.
 */
async function verifyIrft(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const c = new Checks(ref);
  const beta = Number(meta.beta);
  if (!(beta > 0)) throw new VerifyError(`${dir}/expected.json: beta = ${JSON.stringify(meta.beta)}; the implicit reward needs a positive beta`);
  const [B, T] = c.shape('demo_ids');
  for (const n of ['gen_ids', 'demo_mask', 'gen_mask']) if (c.shape(n).join() !== [B, T].join()) throw new VerifyError(`${dir}: ${n} must have demo_ids' shape [${B}, ${T}]`);
  const ids = stackRows(c.tensor('demo_ids') as Int32Array, c.tensor('gen_ids') as Int32Array); // [2B, T]
  const mask = stackRows(c.tensor('demo_mask') as Float32Array, c.tensor('gen_mask') as Float32Array);
  const policy = loadCausalLM(join(dir, 'policy'));
  const reference = loadCausalLM(join(dir, 'reference'), { frozen: true }); // f32, no gradients
  try {
    await tidyAsync(async () => {
      const idsT = Tensor.fromArray(ids, [2 * B, T], 'i32'), maskT = Tensor.fromArray(mask, [2 * B, T]);
      const policyLogp = sequenceLogprobs(policy.tokenLogprobs(idsT), maskT); // [2B]
      const refLogp = sequenceLogprobs(reference.tokenLogprobs(idsT), maskT); // [2B], off the tape: nothing in it trains
      const { loss, margin } = irftLoss(policyLogp, refLogp, beta);
      backward(loss);
      const [pi, re] = [await policyLogp.toArray(), await refLogp.toArray()];
      await c.expect('policy_logp_demo', pi.subarray(0, B), FORWARD_TOL);
      await c.expect('policy_logp_gen', pi.subarray(B), FORWARD_TOL);
      await c.expect('ref_logp_demo', re.subarray(0, B), FORWARD_TOL);
      await c.expect('ref_logp_gen', re.subarray(B), FORWARD_TOL);
      await c.expect('margin', margin, FORWARD_TOL);
      await c.expect('loss', loss, FORWARD_TOL);
    });
    await expectGradients(c, ref, policy.params);
  } finally {
    policy.dispose();
    reference.dispose();
  }
  return c.list;
}

/**
 * A LoRA folder (test/fixtures/train/lora): the base model, adapter_init/ in PEFT's format, inputs input_ids,
 * loss_mask and eval_ids. Full-batch AdamW steps on the adapters only, the loss being the response-token NLL
 * over the batch / its response tokens; checked: the loss of each step, step 1's adapter gradients, the
 * adapters after each step, the merged weights and the merged model's logits on eval_ids. F64 references.
 */
async function verifyLora(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const list: Check[] = [];
  const metaFile = join(dir, 'expected.json');
  const refValues = (name: string) => {
    if (!ref.has(name)) throw new VerifyError(`${ref.path}: no tensor '${name}'`);
    return ref.read(name) as Float32Array | Float64Array;
  };
  const expect = async (name: string, ours: Tensor | ArrayLike<number>, tol: number, label = name) =>
    list.push(check(label, ours instanceof Tensor ? await ours.toArray() : ours, refValues(name), tol));
  const opt = (meta.optimizer ?? {}) as { lr?: number; betas?: [number, number]; eps?: number; weight_decay?: number; constant_lr?: boolean };
  if (opt.constant_lr === false) throw new VerifyError(`${metaFile}: field 'optimizer.constant_lr' is false; the lora kind runs a constant learning rate`);
  const steps = Number(meta.steps ?? ref.info('loss').shape[0]);
  const inputs = SafetensorsFile.open(join(dir, 'inputs.safetensors'));
  const model = loadCausalLM(dir);
  try {
    const ids = inputs.read('input_ids') as Int32Array, mask = inputs.read('loss_mask') as Float32Array;
    const [B, T] = inputs.info('input_ids').shape;
    const responseTokens = mask.reduce((n, m, i) => n + (i % T > 0 && m !== 0 ? 1 : 0), 0);
    loadLora(model, join(dir, 'adapter_init'));
    const adapters = model.params.specs.filter((s) => s.adapter).map((s) => s.name);
    const entries = model.params.entries();
    list.push(exactCheck('optimizer entries = the adapters', [entries.length, ...entries.map((e) => adapters.indexOf(e.name))], [adapters.length, ...adapters.keys()]));
    const adamw = new AdamW(entries, { lr: opt.lr ?? 1e-2, betas: opt.betas ?? [0.9, 0.999], eps: opt.eps ?? 1e-8, weightDecay: opt.weight_decay ?? 0 });
    const losses: number[] = [];
    try {
      for (let step = 1; step <= steps; step++) {
        await tidyAsync(async () => {
          const idsT = Tensor.fromArray(ids, [B, T], 'i32'), maskT = Tensor.fromArray(mask, [B, T]);
          const loss = sftMicroLoss(model.tokenLogprobs(idsT), maskT, responseTokens);
          backward(loss);
          losses.push(await loss.item());
        });
        if (step === 1) for (const name of adapters) await expect(`grad_step1.${name}`, model.params.get(name).grad!, GRADIENT_TOL);
        adamw.step();
        adamw.zeroGrad();
        for (const name of adapters) await expect(`step${step}.${name}`, model.params.get(name), GRADIENT_TOL);
      }
    } finally {
      adamw.dispose();
    }
    list.unshift(check('loss', losses, refValues('loss'), FORWARD_TOL));
    await mergeLora(model);
    for (const name of ref.names().filter((n) => n.startsWith('merged.'))) await expect(name, model.params.get(name.slice('merged.'.length)), GRADIENT_TOL);
    const evalIds = inputs.read('eval_ids') as Int32Array;
    await tidyAsync(() => expect('merged_logits', noGrad(() => model.forward(Tensor.fromArray(evalIds, inputs.info('eval_ids').shape, 'i32'))), FORWARD_TOL));
  } finally {
    model.dispose();
    inputs.close();
  }
  return list;
}

/** A number of expected.json, or a VerifyError naming the field. */
function metaNumber(meta: Record<string, unknown>, path: string): number {
  const v = metaValue(meta, path);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new VerifyError(`expected.json: field '${path}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/*
 * Exemptions of the training kinds (sft, irft_loop, rft_step), one set of rules for all. Adam's first update of
 * an element is lr·g/(|g| + eps) (bias-corrected moments m̂ = g, v̂ = g²), so where |g| is near or below eps the
 * update follows the float32 rounding of g, not its value. Such elements are held to |p - p_ref| <= Σ lr (Adam
 * moves an element by at most about lr a step) instead of their tensor's 1e-4, and every other element of the
 * tensor stays at 1e-4:
 * - Rule A (mathematics, zeroGradientElements): the true gradient is exactly 0 by a symmetry of the loss.
 * - Rule B (Adam's noise-sensitive regime, adamNoiseElements): at the first step of each fresh optimizer, the
 *   gradient is below ADAM_NOISE_FACTOR·eps. Once such an element has moved (an lr > 0 step), the quantities
 *   computed from the parameters afterwards (losses, norms, margins, log-probs, rewards) are checked at the
 *   gradient tolerance 1e-4 instead of 1e-5, and named so. Rule A's directions change no forward value (the key
 *   bias) or only a common shift of the rewards (the final norm's bias: see verifyRftStep), so they do not.
 */

/** Why an element is held to the Σ lr bound; elements of one reason are checked together. */
type Bounded = Map<string, Map<number, string>>;

/** One exempted set, as the report lists it: the model ('model', 'policy', 'reward_model'), the rule, the elements. */
export interface Exemption { model: string; rule: 'zero-gradient' | 'adam-noise'; parameter: string; elements: number[]; why: string }

/**
 * Rule B's factor c: an element is exempt when |g| < c·eps at a fresh optimizer's first step. The update's
 * sensitivity to its gradient is d(lr·g/(|g|+eps))/dg = lr·eps/(|g|+eps)², so a gradient error δ moves the element
 * by lr·eps·δ/(|g|+eps)² <= lr·δ/((c+1)²·eps) when |g| >= c·eps. The float32 errors of the near-zero gradients of
 * these fixtures measure up to ~1e-8 absolute (δ ≈ eps: sft's dense_4h_to_h element 1155, irft_loop's stage-2
 * [10,18] element of layer 0's query_key_value.weight, -2.4e-8 ours against ≈ -3.5e-8), and lr <= 1e-2, so with
 * c = 10 a kept element moves by <= 1e-2/121 = 8.3e-5: <= 3.3e-5 relative to the smallest weight matrix here
 * (norm 2.57), which with the ~3e-5 float32 drift of the rest stays under the 1e-4 tolerance; c = 9 would already
 * allow 1e-4 alone. (A vector of norm ~0.25 would need c ≈ 25; no bias or norm element of these fixtures has a
 * gradient between 10 and 30 eps.)
 */
export const ADAM_NOISE_FACTOR = 10;

/**
 * The elements of GPT-NeoX's attention.query_key_value.bias [H·3D] whose true gradient is exactly 0: the key part
 * ([h][k][D], rows grouped per head as [q, k, v]) on the dims past rotaryDims (softmax ignores a shift of all keys).
 */
function keyBiasNullElements(heads: number, headDim: number, rotaryDims: number): number[] {
  const out: number[] = [];
  for (let h = 0; h < heads; h++) for (let d = rotaryDims; d < headDim; d++) out.push(h * 3 * headDim + headDim + d);
  return out;
}

/**
 * Rule A: the elements whose true gradient is exactly 0 by symmetry. The key-bias elements of every GPT-NeoX
 * attention.query_key_value.bias on the non-rotary dims; and for a reward model trained with the Bradley-Terry
 * loss mean -log σ(r_demo - r_gen), all of GPT-NeoX's gpt_neox.final_layer_norm.bias: the reward reads
 * score·final_norm(h), so that bias shifts every reward by score·bias, and the loss is invariant to a common shift
 * (dL/dr_demo + dL/dr_gen = 0 in every pair). Mistral has neither bias.
 */
function zeroGradientElements(params: ParameterSet, config: { heads: number; headDim: number; rotaryDims: number }, opts: { bradleyTerry: boolean }): Bounded {
  const out: Bounded = new Map();
  for (const spec of params.specs) {
    if (!spec.trainable) continue;
    if (spec.name.endsWith('attention.query_key_value.bias'))
      out.set(spec.name, new Map(keyBiasNullElements(config.heads, config.headDim, config.rotaryDims).map((i) => [i, 'zero-gradient key'])));
    else if (opts.bradleyTerry && spec.name === FINAL_NORM_BIAS)
      out.set(spec.name, new Map(Array.from({ length: spec.shape.reduce((a, b) => a * b, 1) }, (_, i) => [i, 'zero-gradient reward-shift'])));
  }
  return out;
}
const FINAL_NORM_BIAS = 'gpt_neox.final_layer_norm.bias';

/**
 * The exemptions of one trained model: Rule A's elements from the start, Rule B's added at each fresh optimizer's
 * first step (freshOptimizer), the Σ lr used so far, and whether Rule B's elements have moved (then `tol` is the
 * gradient tolerance and `note` says why). Every exempted set goes to the report's `exemptions`.
 */
class Exempted {
  readonly zero: Bounded;
  readonly noise: Bounded = new Map();
  lrSum = 0;
  moved = false;
  constructor(readonly model: string, zero: Bounded, private readonly log: Exemption[]) {
    this.zero = zero;
    for (const [parameter, elements] of zero) {
      const why = [...elements.values()][0] === 'zero-gradient key' ? 'key bias on the non-rotary dims: softmax ignores a shift of all keys' : 'final norm bias: the Bradley-Terry loss ignores a common shift of the rewards';
      log.push({ model, rule: 'zero-gradient', parameter, elements: [...elements.keys()], why });
    }
  }
  /** Whether Rule A holds the reward-shift direction (the rewards after a step are then compared modulo a shift). */
  get shiftFree(): boolean { return this.zero.has(FINAL_NORM_BIAS); }

  /**
   * Rule B at the first step of a fresh optimizer `at`: `gradient(name)` is the step's gradient (the
   * reference's where the fixture stores it, else ours: `source` says which), `scale` the clipping coefficient.
   * Elements whose gradient is exactly 0 have no path to the loss (unused embedding rows): 0 in any precision, no
   * noise, no exemption. Rule A's elements stay Rule A's.
   */
  freshOptimizer(at: string, params: ParameterSet, gradient: (name: string) => ArrayLike<number> | undefined, source: string, scale: number, eps: number): void {
    const label = `sub-${ADAM_NOISE_FACTOR}·eps-gradient (${at}, ${source})`;
    for (const { name } of params.specs) {
      const g = gradient(name);
      if (!g) continue;
      const zero = this.zero.get(name), small: number[] = [];
      for (let i = 0; i < g.length; i++) if (g[i] !== 0 && Math.abs(scale * g[i]) < ADAM_NOISE_FACTOR * eps && !zero?.has(i)) small.push(i);
      if (small.length === 0) continue;
      const into = this.noise.get(name) ?? new Map<number, string>();
      for (const i of small) if (!into.has(i)) into.set(i, label);
      this.noise.set(name, into);
      this.log.push({ model: this.model, rule: 'adam-noise', parameter: name, elements: small, why: label });
    }
  }
  /** After an optimizer step with learning rate lr. */
  stepped(lr: number): void {
    this.lrSum += lr;
    if (lr > 0 && this.noise.size > 0) this.moved = true;
  }
  bounded(name: string): Map<number, string> {
    return new Map([...(this.zero.get(name) ?? []), ...(this.noise.get(name) ?? [])]);
  }
}

/** The tolerance of a forward value computed from these models' parameters now, and the suffix naming why. */
function downstream(...models: Exempted[]): { tol: number; note: string } {
  const moved = models.filter((m) => m.moved).map((m) => m.model);
  return moved.length === 0 ? { tol: FORWARD_TOL, note: '' } : { tol: GRADIENT_TOL, note: ` (gradient tolerance: ${moved.join(' and ')} sub-${ADAM_NOISE_FACTOR}·eps-gradient elements moved)` };
}

/** Our gradients, read back (Rule B's source where the reference stores none). */
async function ourGradients(params: ParameterSet): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const { name } of params.specs) {
    const g = params.get(name).grad;
    if (g) out.set(name, (await g.toArray()) as Float32Array);
  }
  return out;
}

/** The reference's gradients `${prefix}.<name>` (F64), for Rule B. */
function referenceGradients(ref: SafetensorsFile, prefix: string): (name: string) => Float64Array | undefined {
  return (name) => (ref.has(`${prefix}.${name}`) ? readF64(ref, `${prefix}.${name}`) : undefined);
}

/** An F64 tensor of a training reference, or a VerifyError. */
function readF64(ref: SafetensorsFile, name: string): Float64Array {
  if (!ref.has(name)) throw new VerifyError(`${ref.path}: no tensor '${name}'`);
  const d = ref.read(name);
  if (!(d instanceof Float64Array)) throw new VerifyError(`${ref.path}: tensor '${name}' has dtype ${ref.info(name).dtype}, expected F64`);
  return d;
}

/**
 * Every parameter against `${prefix}.<name>` (F64) at GRADIENT_TOL, except the model's exempted elements (Rule A
 * and B), checked apart: the rest of the tensor at GRADIENT_TOL, and each reason's elements by
 * max |p - p_ref| / Σ lr <= 1 (Σ lr: every step so far).
 */
async function expectParametersAfterSteps(list: Check[], ref: SafetensorsFile, params: ParameterSet, prefix: string, model: Exempted): Promise<void> {
  const lrSum = model.lrSum;
  for (const { name } of params.specs) {
    const refName = `${prefix}.${name}`;
    if (!ref.has(refName)) { list.push({ name: refName, relErr: Infinity, tol: GRADIENT_TOL, pass: false }); continue; }
    const ours = await params.get(name).toArray(), expected = readF64(ref, refName);
    const bounded = model.bounded(name);
    if (bounded.size === 0) { list.push(check(refName, ours, expected, GRADIENT_TOL)); continue; }
    const groups = new Map<string, number[]>();
    for (const [i, why] of bounded) groups.set(why, [...(groups.get(why) ?? []), i]);
    const keep = (_: number, i: number) => !bounded.has(i);
    const kinds = [...groups].map(([why, is]) => `${is.length} ${why}`).join(' and ');
    list.push(check(`${refName} (without the ${kinds} elements)`, ours.filter(keep), expected.filter(keep), GRADIENT_TOL));
    for (const [why, is] of groups) {
      let worst = 0;
      for (const i of is) worst = Math.max(worst, Math.abs(ours[i] - expected[i]));
      // Reported as the fraction of the bound used: passes at <= 1.
      list.push({ name: `${refName} ${is.length} ${why} elements: max |p - p_ref| / Σ lr (${lrSum})`, relErr: lrSum > 0 ? worst / lrSum : worst, tol: 1, pass: worst <= lrSum + 1e-7 });
    }
  }
}

/**
 * A GPT-NeoX SFT folder (fixtures/train/sft): every optimizer step runs TrainStep with AdamW, the linear warmup
 * schedule and global-norm clipping of expected.json, on micro-batches of consecutive rows whose losses are
 * sftMicroLoss over the whole batch's response-token count. Checks each step's loss, pre-clip norm and lr
 * (1e-5) and clipped flag, the step-1 gradients (1e-4), and every parameter after the steps the reference holds
 * (1e-4), except the exempted elements (Rule A: the key-bias elements with a true gradient of 0; Rule B: those
 * whose clipped step-1 gradient, the reference's grad_step1, is below 10·eps), held to |p - p_ref| <= the lrs
 * used; losses and norms after Rule B's elements moved are held to the gradient tolerance.
 */
async function verifySft(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, _absent: Absent[], exemptions: Exemption[]): Promise<Check[]> {
  const list: Check[] = [];
  const f64 = (name: string): Float64Array => readF64(ref, name);
  const batching = String(meta.batching ?? '');
  const micro = Number(/micro-batch (\d+)/.exec(batching)?.[1]), accumulation = Number(/accumulation (\d+)/.exec(batching)?.[1]);
  if (!(micro > 0 && accumulation > 0)) throw new VerifyError(`${dir}/expected.json: 'batching' must say "micro-batch N, gradient accumulation K", got ${JSON.stringify(meta.batching)}`);
  const inputs = SafetensorsFile.open(join(dir, 'inputs.safetensors'));
  let ids: Int32Array, mask: Float32Array, B: number, T: number;
  try {
    ids = inputs.read('input_ids') as Int32Array;
    mask = inputs.read('loss_mask') as Float32Array;
    [B, T] = inputs.info('input_ids').shape;
  } finally {
    inputs.close();
  }
  if (B !== micro * accumulation) throw new VerifyError(`${dir}: ${B} rows, but micro-batch ${micro} × accumulation ${accumulation}`);
  let total = 0;
  for (let i = 0; i < mask.length; i++) if (i % T !== 0) total += mask[i]; // position 0 never counts
  const refLoss = f64('loss'), refNorm = f64('grad_norm'), refLr = f64('lr'), refClipped = ref.read('clipped') as Int32Array;
  const steps = refLoss.length;
  const schedule = makeSchedule({ kind: 'linear', lr: metaNumber(meta, 'optimizer.lr_peak'), totalSteps: metaNumber(meta, 'schedule.total_steps'), warmupSteps: metaNumber(meta, 'schedule.warmup_steps') });
  const model = loadCausalLM(dir);
  const params = model.params;
  const optimizer = makeOptimizer('adamw', params.entries(), { lr: 0, betas: metaBetas(meta, 'optimizer'), eps: metaNumber(meta, 'optimizer.eps'), weightDecay: metaNumber(meta, 'optimizer.weight_decay') });
  const trainStep = new TrainStep({ params, optimizer, schedule, clipNorm: metaNumber(meta, 'clipping.max_norm') });
  const batches = Array.from({ length: accumulation }, (_, m) => {
    const begin = m * micro * T, end = (m + 1) * micro * T; // micro-batch m: rows [m·micro, (m+1)·micro)
    return { ids: Tensor.fromArray(ids.subarray(begin, end), [micro, T], 'i32').keep(), mask: Tensor.fromArray(mask.subarray(begin, end), [micro, T]).keep() };
  });
  const micros = batches.map((b) => () => sftMicroLoss(model.tokenLogprobs(b.ids), b.mask, total));
  const exempted = new Exempted('model', zeroGradientElements(params, model.config, { bradleyTerry: false }), exemptions);
  try {
    // Step 1's accumulated gradients, before clipping: the same micro-batches, backward only.
    for (const fn of micros) tidy(() => backward(fn()));
    for (const { name } of params.specs) {
      const refName = `grad_step1.${name}`;
      const grad = params.get(name).grad;
      if (!grad || !ref.has(refName)) { list.push({ name: refName, relErr: Infinity, tol: GRADIENT_TOL, pass: false }); continue; }
      list.push(check(refName, await grad.toArray(), f64(refName), GRADIENT_TOL));
    }
    zeroGrad(params.all());
    const maxNorm = metaNumber(meta, 'clipping.max_norm');
    // Rule B on the first (fresh) optimizer step's clipped gradient: the reference's grad_step1 scaled as it clips.
    exempted.freshOptimizer('step 1', params, referenceGradients(ref, 'grad_step1'), 'reference grad_step1', Math.min(1, maxNorm / (refNorm[0] + 1e-6)), metaNumber(meta, 'optimizer.eps'));
    for (let s = 1; s <= steps; s++) {
      const { tol, note } = downstream(exempted); // the loss and norm of step s come before its update
      const r = await trainStep.run(micros);
      exempted.stepped(r.lr);
      list.push(check(`loss[${s}]${note}`, [r.loss], [refLoss[s - 1]], tol));
      list.push(check(`grad_norm[${s}]${note}`, [r.gradNorm], [refNorm[s - 1]], tol));
      list.push(check(`lr[${s}]`, [r.lr], [refLr[s - 1]], FORWARD_TOL));
      list.push(exactCheck(`clipped[${s}]`, [r.clipped ? 1 : 0], [refClipped[s - 1]]));
      if (!ref.names().some((n) => n.startsWith(`after_step${s}.`))) continue;
      await expectParametersAfterSteps(list, ref, params, `after_step${s}`, exempted);
    }
    for (const name of ref.names()) {
      const m = /^(grad_step1|after_step\d+)\.(.+)$/.exec(name);
      if (m && !params.tensors.has(m[2])) list.push({ name: `${name} (no such parameter)`, relErr: Infinity, tol: GRADIENT_TOL, pass: false });
    }
  } finally {
    trainStep.dispose();
    optimizer.dispose();
    for (const b of batches) { b.ids.dispose(); b.mask.dispose(); }
    model.dispose();
  }
  return list;
}

/** Every parameter's gradient against `${prefix}.<name>` (F64) at GRADIENT_TOL. */
async function expectGradientsAt(list: Check[], ref: SafetensorsFile, params: ParameterSet, prefix: string): Promise<void> {
  for (const { name } of params.specs) {
    const refName = `${prefix}.${name}`, grad = params.get(name).grad;
    if (!grad || !ref.has(refName)) { list.push({ name: refName, relErr: Infinity, tol: GRADIENT_TOL, pass: false }); continue; }
    list.push(check(refName, await grad.toArray(), readF64(ref, refName), GRADIENT_TOL));
  }
}

/** Rows of a right- (or left-) padded [B, L] batch with their lengths: row b's real tokens. */
function unpadded(ids: Int32Array, lens: Int32Array, L: number, left: boolean): number[][] {
  return Array.from(lens, (n, b) => Array.from(ids.subarray(b * L + (left ? L - n : 0), b * L + (left ? L : n))));
}

/** AdamW options of an expected.json optimizer block ({lr, betas, eps, weight_decay}). */
function adamwOptions(meta: Record<string, unknown>, path: string): { lr: number; betas: [number, number]; eps: number; weightDecay: number } {
  return { lr: metaNumber(meta, `${path}.lr`), betas: metaBetas(meta, path), eps: metaNumber(meta, `${path}.eps`), weightDecay: metaNumber(meta, `${path}.weight_decay`) };
}

/** `${path}.betas` of expected.json: two numbers. */
function metaBetas(meta: Record<string, unknown>, path: string): [number, number] {
  const betas = metaValue(meta, `${path}.betas`);
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number')) throw new VerifyError(`expected.json: field '${path}.betas' must be two numbers`);
  return betas as [number, number];
}

function metaValue(meta: Record<string, unknown>, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), meta);
}

/** The largest k with `${prefix}${k}${suffix}` in the reference (steps or stages counted from 1). */
function countOf(ref: SafetensorsFile, prefix: string, suffix: string): number {
  let k = 0;
  while (ref.has(`${prefix}${k + 1}${suffix}`)) k++;
  if (k === 0) throw new VerifyError(`${ref.path}: no tensor '${prefix}1${suffix}'`);
  return k;
}

/**
 * An IRFT loop folder (fixtures/train/irft_loop): stages of greedy generation (tokens exact), the reference
 * log-probs computed once with the policy at the stage start, then a fresh AdamW's steps through TrainStep on the
 * SPIN loss (irftStageMicros, sigmoid). Checked per step: loss, margins, policy and reference log-probs (1e-5);
 * the gradients the reference stores (stage 1's first step, 1e-4); the parameters after stage 1 and at the end
 * (1e-4). Exemptions (Rule A: the key-bias elements; Rule B at each stage's fresh AdamW's first step: the
 * reference's gradient where it stores one, else ours, said in the exempted elements' name): held to
 * |p - p_ref| <= Σ lr of all stages so far; the values after Rule B's elements moved at the gradient tolerance.
 */
async function verifyIrftLoop(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, absent: Absent[], exemptions: Exemption[]): Promise<Check[]> {
  const list: Check[] = [];
  const beta = Number(/beta = ([0-9.eE+-]+)/.exec(String(meta.loss ?? ''))?.[1]);
  if (!(beta > 0)) throw new VerifyError(`${dir}/expected.json: field 'loss' must state "beta = <number>", got ${JSON.stringify(meta.loss)}`);
  const opt = adamwOptions(meta, 'optimizer');
  const inputs = SafetensorsFile.open(join(dir, 'inputs.safetensors'));
  let examples: IrftExample[];
  try {
    const prompts = unpadded(inputs.read('prompt_ids_left_padded') as Int32Array, inputs.read('prompt_lens') as Int32Array, inputs.info('prompt_ids_left_padded').shape[1], true);
    const demos = unpadded(inputs.read('demo_ids') as Int32Array, inputs.read('demo_lens') as Int32Array, inputs.info('demo_ids').shape[1], false);
    examples = prompts.map((prompt, b) => ({ prompt, demo: demos[b] }));
  } finally {
    inputs.close();
  }
  const stages = countOf(ref, 'stage', '.gen_tokens'), steps = countOf(ref, 'stage1.step', '.loss');
  const maxNewTokens = ref.info('stage1.gen_tokens').shape[1];
  const policy = loadCausalLM(dir);
  const exempted = new Exempted('policy', zeroGradientElements(policy.params, policy.config, { bradleyTerry: false }), exemptions);
  try {
    for (let s = 1; s <= stages; s++) {
      const state = await startIrftStage(policy, s, examples, { maxNewTokens });
      const gens = examples.map((_, i) => state.pairs[state.examples.indexOf(i)]?.gen ?? []);
      list.push(exactCheck(`stage${s}.gen_tokens (${state.dropped} identical pairs dropped)`, gens.flat(), ref.read(`stage${s}.gen_tokens`) as Int32Array));
      if (state.dropped > 0) throw new VerifyError(`${dir}: stage ${s} dropped ${state.dropped} pairs whose generation equals the demonstration; the fixture trains on all`);
      const { tol: refTol, note: refNote } = downstream(exempted); // the reference: the policy at the stage start
      const optimizer = makeOptimizer('adamw', policy.params.entries(), opt); // fresh every stage
      const trainStep = new TrainStep({ params: policy.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: opt.lr, totalSteps: steps }), clipNorm: null });
      try {
        for (let k = 1; k <= steps; k++) {
          const at = `stage${s}.step${k}`;
          let kept: IrftMicroValues | undefined;
          const micros = irftStageMicros(policy, state, { beta, lossType: 'sigmoid' }, undefined, (v) => { kept = { policyLogp: v.policyLogp.keep(), margin: v.margin.keep() }; });
          const refGrads = ref.names().some((n) => n.startsWith(`${at}.grad.`));
          if (refGrads || k === 1) {
            for (const fn of micros) tidy(() => backward(fn()));
            if (refGrads) await expectGradientsAt(list, ref, policy.params, `${at}.grad`);
            if (k === 1) {
              const ours = refGrads ? undefined : await ourGradients(policy.params);
              exempted.freshOptimizer(at, policy.params, ours ? (name) => ours.get(name) : referenceGradients(ref, `${at}.grad`), ours ? 'our gradient: the reference stores none' : `reference ${at}.grad`, 1, opt.eps);
            }
            zeroGrad(policy.params.all());
            kept?.policyLogp.dispose();
            kept?.margin.dispose();
          }
          // The reference log-probs are the policy's at the stage start; the step's values before its update.
          const { tol, note } = downstream(exempted);
          const r = await trainStep.run(micros);
          exempted.stepped(r.lr);
          const B = state.pairs.length, logp = await kept!.policyLogp.toArray(), margin = await kept!.margin.toArray();
          kept!.policyLogp.dispose();
          kept!.margin.dispose();
          list.push(check(`${at}.loss${note}`, [r.loss], readF64(ref, `${at}.loss`), tol));
          list.push(check(`${at}.margin${note}`, margin, readF64(ref, `${at}.margin`), tol));
          list.push(check(`${at}.policy_logp_demo${note}`, logp.subarray(0, B), readF64(ref, `${at}.policy_logp_demo`), tol));
          list.push(check(`${at}.policy_logp_gen${note}`, logp.subarray(B), readF64(ref, `${at}.policy_logp_gen`), tol));
          list.push(check(`${at}.ref_logp_demo${refNote}`, state.reference.demo, readF64(ref, `${at}.ref_logp_demo`), refTol));
          list.push(check(`${at}.ref_logp_gen${refNote}`, state.reference.gen, readF64(ref, `${at}.ref_logp_gen`), refTol));
        }
      } finally {
        trainStep.dispose();
        optimizer.dispose();
      }
      await endIrftStage(policy, s);
      const prefix = s === stages ? 'final' : `after_stage${s}`;
      if (ref.has(`${prefix}.embed_out.weight`)) await expectParametersAfterSteps(list, ref, policy.params, prefix, exempted);
      else if (s === stages) absent.push({ name: `${prefix}.*`, absent: true });
    }
  } finally {
    policy.dispose();
  }
  absent.push({ name: 'stage{s}.gaps (the tokens are checked exactly)', absent: true });
  return list;
}

/**
 * An RFT folder (fixtures/train/rft_step): the reward model's Bradley-Terry step (rewards before and after, loss,
 * gradients, parameters), then RLOO policy steps on k given samples per prompt against the fixed reference/:
 * per sample logp, ref logp, KL, R and A (1e-5), the loss, the gradients and the parameters after each step.
 *
 * Exemptions: Rule A holds the key-bias elements of both models and the reward model's final_layer_norm.bias,
 * whose true gradient under the Bradley-Terry loss is exactly 0; Rule B (sub-10·eps reference gradients) applies
 * at the two fresh optimizers' first steps (reward_grad, policy_step1.grad), and the policy's values after its
 * Rule B elements moved are held to the gradient tolerance.
 *
 * Rewards after the reward step, and R built from them, are checked MODULO THEIR COMMON SHIFT: the loss depends on
 * reward differences only, so it defines absolute rewards only up to a constant, and the one parameter that moves
 * them all together (the final norm's bias: every reward shifts by score·bias) has a true gradient of 0, so its
 * float32 rounding noise, normalized by Adam, moves it by up to lr and shifts every reward by the same amount in
 * any float32 implementation. The shift (the mean of ours - ref over the three after-step reward tensors, named in
 * the checks) is subtracted from ours and the rest checked at 1e-5; A (differences within a prompt) needs no
 * shift. The absolute comparisons are reported as informational checks that cannot fail the run: they measure
 * the float32 noise along a direction the loss does not see, not an error of the implementation.
 */
async function verifyRftStep(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, _absent: Absent[], exemptions: Exemption[]): Promise<Check[]> {
  const list: Check[] = [];
  const inputs = SafetensorsFile.open(join(dir, 'inputs.safetensors'));
  let demo: Int32Array, gen: Int32Array, T: number, samples: SampleBatch, promptIndex: Int32Array;
  try {
    demo = inputs.read('pair_demo_ids') as Int32Array;
    gen = inputs.read('pair_gen_ids') as Int32Array;
    T = inputs.info('pair_demo_ids').shape[1];
    samples = { ids: inputs.read('sample_ids') as Int32Array, mask: inputs.read('sample_mask') as Float32Array, T: inputs.info('sample_ids').shape[1] };
    promptIndex = inputs.read('sample_prompt_index') as Int32Array;
  } finally {
    inputs.close();
  }
  const k = metaNumber(meta, 'policy_step.k'), betaKl = metaNumber(meta, 'policy_step.beta_kl');
  if (!promptIndex.every((p, i) => p === Math.floor(i / k))) throw new VerifyError(`${dir}: sample_prompt_index must be prompt-major (i // ${k})`);
  const N = promptIndex.length, B = demo.length / T;
  const rm = loadRewardModel(join(dir, 'reward_model'));
  const policy = loadCausalLM(join(dir, 'policy'));
  const reference = loadCausalLM(join(dir, 'reference'), { frozen: true });
  const rewardsOf = async (ids: Int32Array, L: number) => tidyAsync(async () => noGrad(() => rm.forward(ids, L)).toArray());
  const rmExempted = new Exempted('reward_model', zeroGradientElements(rm.params, rm.config, { bradleyTerry: true }), exemptions);
  const policyExempted = new Exempted('policy', zeroGradientElements(policy.params, policy.config, { bradleyTerry: false }), exemptions);
  // Rewards of the trained reward model: modulo their common shift where Rule A holds the shift direction.
  let shift = 0;
  const rewardChecks = (items: [string, ArrayLike<number>, Float64Array][], tol: number, note: string) => {
    if (!rmExempted.shiftFree) { for (const [name, ours, expected] of items) list.push(check(`${name}${note}`, ours, expected, tol)); return; }
    const shifted = `modulo the common reward shift ${shift.toExponential(3)}`;
    for (const [name, ours, expected] of items) {
      list.push(check(`${name} (${shifted})${note}`, Array.from(ours, (v) => v - shift), expected, tol));
      const relErr = relativeError(ours, expected);
      list.push({ name: `${name} (absolute, informational)`, relErr, tol, pass: true, informational: true, note: `the Bradley-Terry loss defines rewards up to a constant; the float32 noise moves the zero-gradient final norm bias and with it every reward by ${shift.toExponential(3)}${relErr <= tol ? '' : ' (over the tolerance, which this check does not enforce)'}` });
    }
  };
  try {
    for (const when of ['before', 'after'] as const) {
      if (when === 'after') {
        const opt = adamwOptions(meta, 'reward_step.optimizer');
        const optimizer = makeOptimizer('adamw', rm.params.entries(), opt);
        const trainStep = new TrainStep({ params: rm.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: opt.lr, totalSteps: 1 }), clipNorm: null });
        try {
          const micros = [() => rewardMicroLoss(rm, demo, gen, T, B)];
          tidy(() => backward(micros[0]()));
          await expectGradientsAt(list, ref, rm.params, 'reward_grad');
          zeroGrad(rm.params.all());
          rmExempted.freshOptimizer('reward step', rm.params, referenceGradients(ref, 'reward_grad'), 'reference reward_grad', 1, opt.eps);
          const r = await trainStep.run(micros);
          rmExempted.stepped(r.lr);
          list.push(check('reward_loss', [r.loss], readF64(ref, 'reward_loss'), FORWARD_TOL));
          await expectParametersAfterSteps(list, ref, rm.params, 'reward_after', rmExempted);
        } finally {
          trainStep.dispose();
          optimizer.dispose();
        }
      }
      const pairs = await rewardsOf(stackRows(demo, gen), T), sampleRewards = await rewardsOf(samples.ids, samples.T);
      const items: [string, ArrayLike<number>, Float64Array][] = [
        [`reward_demo_${when}`, pairs.subarray(0, B), readF64(ref, `reward_demo_${when}`)],
        [`reward_gen_${when}`, pairs.subarray(B), readF64(ref, `reward_gen_${when}`)],
        [`reward_samples_${when}`, sampleRewards, readF64(ref, `reward_samples_${when}`)],
      ];
      if (when === 'before') for (const [name, ours, expected] of items) list.push(check(name, ours, expected, FORWARD_TOL));
      else {
        const diffs = items.flatMap(([, ours, expected]) => Array.from(ours, (v, i) => v - expected[i]));
        if (rmExempted.shiftFree) shift = diffs.reduce((a, b) => a + b, 0) / diffs.length;
        const { tol, note } = downstream(rmExempted);
        rewardChecks(items, tol, note);
      }
    }
    const refLogp = await sampleLogprobs(reference, samples); // once: the reference stays the initial policy
    const opt = adamwOptions(meta, 'policy_step.optimizer');
    const steps = countOf(ref, 'policy_step', '.loss');
    const optimizer = makeOptimizer('adamw', policy.params.entries(), opt);
    const trainStep = new TrainStep({ params: policy.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: opt.lr, totalSteps: steps }), clipNorm: null });
    try {
      for (let s = 1; s <= steps; s++) {
        const at = `policy_step${s}`;
        const scores = await rolloutScores(policy, refLogp, rm, samples, k, betaKl);
        const own = downstream(policyExempted), both = downstream(rmExempted, policyExempted);
        list.push(check(`${at}.logp${own.note}`, scores.logp, readF64(ref, `${at}.logp`), own.tol));
        list.push(check(`${at}.ref_logp`, scores.refLogp, readF64(ref, `${at}.ref_logp`), FORWARD_TOL));
        list.push(check(`${at}.kl${own.note}`, scores.kl, readF64(ref, `${at}.kl`), own.tol));
        rewardChecks([[`${at}.R`, scores.R, readF64(ref, `${at}.R`)]], both.tol, both.note);
        list.push(check(`${at}.A${both.note}`, scores.A, readF64(ref, `${at}.A`), both.tol));
        const micros = [() => rftPolicyMicroLoss(policy, samples, scores.A, N)];
        tidy(() => backward(micros[0]()));
        await expectGradientsAt(list, ref, policy.params, `${at}.grad`);
        zeroGrad(policy.params.all());
        if (s === 1) policyExempted.freshOptimizer(at, policy.params, referenceGradients(ref, `${at}.grad`), `reference ${at}.grad`, 1, opt.eps);
        const r = await trainStep.run(micros);
        policyExempted.stepped(r.lr);
        list.push(check(`${at}.loss${both.note}`, [r.loss], readF64(ref, `${at}.loss`), both.tol));
        await expectParametersAfterSteps(list, ref, policy.params, `${at}.after`, policyExempted);
      }
    } finally {
      trainStep.dispose();
      optimizer.dispose();
    }
  } finally {
    rm.dispose();
    policy.dispose();
    reference.dispose();
  }
  return list;
}

function check(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number): Check {
  const relErr = relativeError(ours, ref);
  return { name, relErr, tol, pass: relErr <= tol };
}

export async function verifyFolder(dirArg: string): Promise<Report> {
  const dir = resolve(dirArg);
  const refPath = join(dir, 'expected.safetensors');
  if (!existsSync(refPath)) throw new VerifyError(`${dir}: no expected.safetensors (a reference folder holds expected.safetensors and expected.json)`);
  const metaPath = join(dir, 'expected.json');
  let meta: Record<string, unknown> = {};
  if (existsSync(metaPath)) {
    try { meta = JSON.parse(readFileSync(metaPath, 'utf8')); } catch (e) { throw new VerifyError(`${metaPath}: invalid JSON: ${(e as Error).message}`); }
  }
  const ref = SafetensorsFile.open(refPath);
  try {
    const kind = KINDS.find((k) => k.detect(ref));
    if (!kind) throw new VerifyError(`${refPath}: cannot tell the kind of reference from its tensors (${ref.names().slice(0, 8).join(', ')}, ...); known kinds: ${KINDS.map((k) => k.kind).join(', ')}`);
    await initGpu();
    const absent: Absent[] = [], exemptions: Exemption[] = [];
    const checks = await kind.run(dir, ref, meta, absent, exemptions);
    return { kind: kind.kind, dir, pass: checks.length > 0 && checks.every((x) => x.pass), checks, absent, exemptions };
  } finally {
    ref.close();
  }
}
