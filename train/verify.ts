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
import { sequenceLogprobs } from './objectives/logprobs.ts';
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

export interface Check { name: string; relErr: number; tol: number; pass: boolean }
/** A quantity the reference does not hold (a real model's logits come without gradients): listed, not failed. */
export interface Absent { name: string; absent: true }
/** Passes when every check passes and there is at least one; `absent` lists what the reference did not hold. */
export interface Report { kind: string; dir: string; pass: boolean; checks: Check[]; absent: Absent[] }

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

type KindRunner = (dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, absent: Absent[]) => Promise<Check[]>;

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
      const logits = model.forward(Tensor.fromArray(ids, [B, T], 'i32'));
      await c.expect('logits', logits, FORWARD_TOL);
      if (!ref.has('loss') && !gradients) return;
      const loss = nextTokenLoss(logits, ids);
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
      const policyLogp = sequenceLogprobs(policy.forward(idsT), idsT, maskT); // [2B]
      const refLogp = sequenceLogprobs(reference.forward(idsT), idsT, maskT); // [2B], off the tape: nothing in it trains
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
          const loss = sftMicroLoss(model.forward(idsT), idsT, maskT, responseTokens);
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
  const v = path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), meta);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new VerifyError(`expected.json: field '${path}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * The elements of GPT-NeoX's attention.query_key_value.bias [H·3D] whose true gradient is exactly 0: the key part
 * ([h][k][D], rows grouped per head as [q, k, v]) on the dims past rotaryDims (softmax ignores a shift of all keys).
 */
function keyBiasNullElements(heads: number, headDim: number, rotaryDims: number): Set<number> {
  const out = new Set<number>();
  for (let h = 0; h < heads; h++) for (let d = rotaryDims; d < headDim; d++) out.add(h * 3 * headDim + headDim + d);
  return out;
}

/** An F64 tensor of a training reference, or a VerifyError. */
function readF64(ref: SafetensorsFile, name: string): Float64Array {
  if (!ref.has(name)) throw new VerifyError(`${ref.path}: no tensor '${name}'`);
  const d = ref.read(name);
  if (!(d instanceof Float64Array)) throw new VerifyError(`${ref.path}: tensor '${name}' has dtype ${ref.info(name).dtype}, expected F64`);
  return d;
}

/**
 * Every parameter against `${prefix}.<name>` (F64) at GRADIENT_TOL after AdamW steps whose learning rates sum to
 * lrSum, except the key-bias elements with a true gradient of 0 (nullKeys, in each attention.query_key_value.bias),
 * which are held to |p - p_ref| <= lrSum: Adam normalizes their float32 rounding noise to moves of up to lr a step.
 */
async function expectParametersAfterSteps(list: Check[], ref: SafetensorsFile, params: ParameterSet, prefix: string, nullKeys: Set<number>, lrSum: number, adamNoise: Map<string, Set<number>> = new Map()): Promise<void> {
  for (const { name } of params.specs) {
    const refName = `${prefix}.${name}`;
    if (!ref.has(refName)) { list.push({ name: refName, relErr: Infinity, tol: GRADIENT_TOL, pass: false }); continue; }
    const ours = await params.get(name).toArray(), expected = readF64(ref, refName);
    const bounded = new Map<number, string>();
    if (name.endsWith('attention.query_key_value.bias')) for (const i of nullKeys) bounded.set(i, 'zero-gradient key');
    for (const i of adamNoise.get(name) ?? []) if (!bounded.has(i)) bounded.set(i, 'sub-eps-gradient');
    if (bounded.size === 0) { list.push(check(refName, ours, expected, GRADIENT_TOL)); continue; }
    const keep = (_: number, i: number) => !bounded.has(i);
    const kinds = [...new Set(bounded.values())].join(' and ');
    list.push(check(`${refName} (without the ${bounded.size} ${kinds} elements)`, ours.filter(keep), expected.filter(keep), GRADIENT_TOL));
    let worst = 0;
    for (const i of bounded.keys()) worst = Math.max(worst, Math.abs(ours[i] - expected[i]));
    // Reported as the fraction of the bound used: passes at <= 1.
    list.push({ name: `${refName} ${kinds} elements: max |p - p_ref| / Σ lr (${lrSum})`, relErr: lrSum > 0 ? worst / lrSum : worst, tol: 1, pass: worst <= lrSum + 1e-7 });
  }
}

/**
 * The elements whose first clipped gradient is below Adam's eps: there Adam's update is lr·g/(|g| + eps), so it
 * follows the gradient's float32 noise rather than its value (the same mathematics as the key-bias exception,
 * where the true gradient is 0), and they are held to the same bound |p - p_ref| <= Σ lr.
 */
function adamNoiseElements(ref: SafetensorsFile, params: ParameterSet, prefix: string, clipCoef: number, eps: number): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  for (const { name } of params.specs) {
    if (!ref.has(`${prefix}.${name}`)) continue;
    const g = readF64(ref, `${prefix}.${name}`), small = new Set<number>();
    g.forEach((v, i) => { if (v !== 0 && Math.abs(clipCoef * v) < eps) small.add(i); });
    if (small.size > 0) out.set(name, small);
  }
  return out;
}

/**
 * A GPT-NeoX SFT folder (fixtures/train/sft): every optimizer step runs TrainStep with AdamW, the linear warmup
 * schedule and global-norm clipping of expected.json, on micro-batches of consecutive rows whose losses are
 * sftMicroLoss over the whole batch's response-token count. Checks each step's loss, pre-clip norm and lr
 * (1e-5) and clipped flag, the step-1 gradients (1e-4), and every parameter after the steps the reference holds
 * (1e-4), except the key-bias elements with a true gradient of 0 and the elements whose clipped step-1 gradient
 * is below Adam's eps (adamNoiseElements), which are held to |p - p_ref| <= the lrs used; losses and norms after
 * such elements moved are held to the gradient tolerance.
 */
async function verifySft(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const list: Check[] = [];
  const f64 = (name: string): Float64Array => {
    const d = ref.read(name);
    if (!(d instanceof Float64Array)) throw new VerifyError(`${ref.path}: tensor '${name}' has dtype ${ref.info(name).dtype}, expected F64`);
    return d;
  };
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
  const betas = (meta.optimizer as { betas?: [number, number] } | undefined)?.betas;
  if (!Array.isArray(betas) || betas.length !== 2) throw new VerifyError(`${dir}/expected.json: optimizer.betas must be two numbers`);
  const optimizer = makeOptimizer('adamw', params.entries(), { lr: 0, betas, eps: metaNumber(meta, 'optimizer.eps'), weightDecay: metaNumber(meta, 'optimizer.weight_decay') });
  const trainStep = new TrainStep({ params, optimizer, schedule, clipNorm: metaNumber(meta, 'clipping.max_norm') });
  const rows = (m: number, n: number) => ({ begin: m * micro * T, end: (m + 1) * micro * T, n });
  const batches = Array.from({ length: accumulation }, (_, m) => {
    const { begin, end } = rows(m, 0);
    return { ids: Tensor.fromArray(ids.subarray(begin, end), [micro, T], 'i32').keep(), mask: Tensor.fromArray(mask.subarray(begin, end), [micro, T]).keep() };
  });
  const micros = batches.map((b) => () => sftMicroLoss(model.forward(b.ids), b.ids, b.mask, total));
  const { heads, headDim, rotaryDims } = model.config;
  const nullKeys = keyBiasNullElements(heads, headDim, rotaryDims);
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
    const adamNoise = adamNoiseElements(ref, params, 'grad_step1', Math.min(1, maxNorm / (refNorm[0] + 1e-6)), metaNumber(meta, 'optimizer.eps'));
    let lrSum = 0;
    for (let s = 1; s <= steps; s++) {
      const r = await trainStep.run(micros);
      // Once sub-eps elements have moved (within their bound), later forward values inherit that: gradient tolerance.
      const downstream = adamNoise.size > 0 && lrSum > 0;
      const tol = downstream ? GRADIENT_TOL : FORWARD_TOL, note = downstream ? ' (after sub-eps-gradient elements moved)' : '';
      lrSum += r.lr;
      list.push(check(`loss[${s}]${note}`, [r.loss], [refLoss[s - 1]], tol));
      list.push(check(`grad_norm[${s}]${note}`, [r.gradNorm], [refNorm[s - 1]], tol));
      list.push(check(`lr[${s}]`, [r.lr], [refLr[s - 1]], FORWARD_TOL));
      list.push(exactCheck(`clipped[${s}]`, [r.clipped ? 1 : 0], [refClipped[s - 1]]));
      if (!ref.names().some((n) => n.startsWith(`after_step${s}.`))) continue;
      await expectParametersAfterSteps(list, ref, params, `after_step${s}`, nullKeys, lrSum, adamNoise);
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
  const betas = metaValue(meta, `${path}.betas`);
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number')) throw new VerifyError(`expected.json: field '${path}.betas' must be two numbers`);
  return { lr: metaNumber(meta, `${path}.lr`), betas: betas as [number, number], eps: metaNumber(meta, `${path}.eps`), weightDecay: metaNumber(meta, `${path}.weight_decay`) };
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
 * the first step's gradients (1e-4); the parameters after stage 1 and at the end (1e-4, the key-bias exception).
 */
async function verifyIrftLoop(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>, absent: Absent[]): Promise<Check[]> {
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
  const nullKeys = keyBiasNullElements(policy.config.heads, policy.config.headDim, policy.config.rotaryDims);
  let lrSum = 0;
  try {
    for (let s = 1; s <= stages; s++) {
      const state = await startIrftStage(policy, s, examples, { maxNewTokens });
      const gens = examples.map((_, i) => state.pairs[state.examples.indexOf(i)]?.gen ?? []);
      list.push(exactCheck(`stage${s}.gen_tokens (${state.dropped} identical pairs dropped)`, gens.flat(), ref.read(`stage${s}.gen_tokens`) as Int32Array));
      if (state.dropped > 0) throw new VerifyError(`${dir}: stage ${s} dropped ${state.dropped} pairs whose generation equals the demonstration; the fixture trains on all`);
      const optimizer = makeOptimizer('adamw', policy.params.entries(), opt); // fresh every stage
      const trainStep = new TrainStep({ params: policy.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: opt.lr, totalSteps: steps }), clipNorm: null });
      try {
        for (let k = 1; k <= steps; k++) {
          const at = `stage${s}.step${k}`;
          let kept: IrftMicroValues | undefined;
          const micros = irftStageMicros(policy, state, { beta, lossType: 'sigmoid' }, undefined, (v) => { kept = { policyLogp: v.policyLogp.keep(), margin: v.margin.keep() }; });
          if (ref.has(`${at}.grad.embed_out.weight`) || ref.names().some((n) => n.startsWith(`${at}.grad.`))) {
            for (const fn of micros) tidy(() => backward(fn()));
            await expectGradientsAt(list, ref, policy.params, `${at}.grad`);
            zeroGrad(policy.params.all());
            kept?.policyLogp.dispose();
            kept?.margin.dispose();
          }
          const r = await trainStep.run(micros);
          lrSum += r.lr;
          const B = state.pairs.length, logp = await kept!.policyLogp.toArray(), margin = await kept!.margin.toArray();
          kept!.policyLogp.dispose();
          kept!.margin.dispose();
          list.push(check(`${at}.loss`, [r.loss], readF64(ref, `${at}.loss`), FORWARD_TOL));
          list.push(check(`${at}.margin`, margin, readF64(ref, `${at}.margin`), FORWARD_TOL));
          list.push(check(`${at}.policy_logp_demo`, logp.subarray(0, B), readF64(ref, `${at}.policy_logp_demo`), FORWARD_TOL));
          list.push(check(`${at}.policy_logp_gen`, logp.subarray(B), readF64(ref, `${at}.policy_logp_gen`), FORWARD_TOL));
          list.push(check(`${at}.ref_logp_demo`, state.reference.demo, readF64(ref, `${at}.ref_logp_demo`), FORWARD_TOL));
          list.push(check(`${at}.ref_logp_gen`, state.reference.gen, readF64(ref, `${at}.ref_logp_gen`), FORWARD_TOL));
        }
      } finally {
        trainStep.dispose();
        optimizer.dispose();
      }
      await endIrftStage(policy, s);
      const prefix = s === stages ? 'final' : `after_stage${s}`;
      if (ref.has(`${prefix}.embed_out.weight`)) await expectParametersAfterSteps(list, ref, policy.params, prefix, nullKeys, lrSum);
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
 */
async function verifyRftStep(dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
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
  const keys = (c: { heads: number; headDim: number; rotaryDims: number }) => keyBiasNullElements(c.heads, c.headDim, c.rotaryDims);
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
          const r = await trainStep.run(micros);
          list.push(check('reward_loss', [r.loss], readF64(ref, 'reward_loss'), FORWARD_TOL));
          await expectParametersAfterSteps(list, ref, rm.params, 'reward_after', keys(rm.config), r.lr);
        } finally {
          trainStep.dispose();
          optimizer.dispose();
        }
      }
      const pairs = await rewardsOf(stackRows(demo, gen), T);
      list.push(check(`reward_demo_${when}`, pairs.subarray(0, B), readF64(ref, `reward_demo_${when}`), FORWARD_TOL));
      list.push(check(`reward_gen_${when}`, pairs.subarray(B), readF64(ref, `reward_gen_${when}`), FORWARD_TOL));
      list.push(check(`reward_samples_${when}`, await rewardsOf(samples.ids, samples.T), readF64(ref, `reward_samples_${when}`), FORWARD_TOL));
    }
    const refLogp = await sampleLogprobs(reference, samples); // once: the reference stays the initial policy
    const opt = adamwOptions(meta, 'policy_step.optimizer');
    const steps = countOf(ref, 'policy_step', '.loss');
    const optimizer = makeOptimizer('adamw', policy.params.entries(), opt);
    const trainStep = new TrainStep({ params: policy.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: opt.lr, totalSteps: steps }), clipNorm: null });
    let lrSum = 0;
    try {
      for (let s = 1; s <= steps; s++) {
        const at = `policy_step${s}`;
        const scores = await rolloutScores(policy, refLogp, rm, samples, k, betaKl);
        for (const [name, ours] of [['logp', scores.logp], ['ref_logp', scores.refLogp], ['kl', scores.kl], ['R', scores.R], ['A', scores.A]] as const)
          list.push(check(`${at}.${name}`, ours, readF64(ref, `${at}.${name}`), FORWARD_TOL));
        const micros = [() => rftPolicyMicroLoss(policy, samples, scores.A, N)];
        tidy(() => backward(micros[0]()));
        await expectGradientsAt(list, ref, policy.params, `${at}.grad`);
        zeroGrad(policy.params.all());
        const r = await trainStep.run(micros);
        lrSum += r.lr;
        list.push(check(`${at}.loss`, [r.loss], readF64(ref, `${at}.loss`), FORWARD_TOL));
        await expectParametersAfterSteps(list, ref, policy.params, `${at}.after`, keys(policy.config), lrSum);
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
    const absent: Absent[] = [];
    const checks = await kind.run(dir, ref, meta, absent);
    return { kind: kind.kind, dir, pass: checks.length > 0 && checks.every((x) => x.pass), checks, absent };
  } finally {
    ref.close();
  }
}
