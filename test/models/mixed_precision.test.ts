// Mixed precision's per-step cache of the weights' f16 copies (engine/ops/cast.ts withF16WeightCopies, opened by
// TrainStep.run): with 3 micro-batches and gradient checkpointing, each f32 weight of a tiny GPT-NeoX, full and LoRA,
// is cast once a step (uncached: once in each micro-batch's forward and again in each replay of its layer), and the
// losses and updated weights are bit for bit those of the same steps run uncached (the micro-batches' forwards and
// backwards in autocast, outside TrainStep). The second step casts the updated weights again; a step that throws
// leaves no copy behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { autocast, backward, zeroGrad } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { makeOptimizer, type Optimizer } from '../../engine/optim.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, numelOf, tidyAsync } from '../../engine/tensor.ts';
import { CausalLM } from '../../models/causal_lm.ts';
import { loadConfig } from '../../models/config.ts';
import { initParameters } from '../../models/init.ts';
import { LORA_TARGET_MODULES } from '../../models/lora.ts';
import { adapterSpecs, attachLora, loraConfig } from '../../models/peft.ts';
import { GRAD_SCALER_DEFAULTS, LossScaler } from '../../train/loss_scaler.ts';
import { makeSchedule } from '../../train/schedule.ts';
import { TrainStep } from '../../train/step.ts';
import { fixture } from '../support/paths.ts';
import { initGpu, randInt, randn } from '../support/util.ts';

const K = 3, B = 2, T = 9, LR = 1e-2, SCALE = 1024;

/** A random 2-layer GPT-NeoX with gradient checkpointing; with `lora`, rank-4 adapters (random B) on every target, the head too. */
function model(lora: boolean): CausalLM {
  const config = { ...loadConfig(fixture('hf/gpt_neox')), layers: 2 };
  const m = new CausalLM(config, initParameters(config, 3, 0.2));
  if (lora) {
    const c = loraConfig(config, { r: 4, alpha: 8, dropout: 0, targetModules: [...LORA_TARGET_MODULES.gpt_neox] });
    attachLora(m, c, new Map(adapterSpecs(config, c).map((s, k) => [s.name, Float32Array.from(randn(numelOf(s.shape), 40 + k, 0.2))])));
  }
  m.gradientCheckpointing = true;
  return m;
}

/** Micro-batch k's loss: the mean next-token NLL over all K micro-batches' tokens. */
const microsOf = (m: CausalLM) => Array.from({ length: K }, (_, k) => () =>
  sumLastDim(reshape(m.tokenLogprobs(Tensor.fromArray(randInt(B * T, m.config.vocabSize, 50 + k), [B, T], 'i32')), [B * T]), false, -1 / (K * B * T)));

const optimizerOf = (m: CausalLM) => makeOptimizer('adamw', m.params.entries(), { lr: LR, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });

/** castF16 dispatches (weights' and others') by phase since the last ledger.reset(). */
function casts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of ledger.all()) if (e.op.startsWith('castF16')) out[`${e.phase} ${e.op}`] = (out[`${e.phase} ${e.op}`] ?? 0) + e.dispatches;
  return out;
}

/** One step as TrainStep.run takes it (the scale as each backward's seed, gradScale 1 / scale), without the cache. */
async function uncachedStep(m: CausalLM, optimizer: Optimizer, micros: readonly (() => Tensor)[]): Promise<number> {
  let loss = 0;
  const seed = Tensor.fromArray([SCALE], [1]);
  for (const micro of micros) {
    loss = Math.fround(loss + await tidyAsync(async () => {
      const l = ledger.inPhase('policy-forward', () => autocast(micro));
      backward(l, seed, 'policy-backward');
      return l.item();
    }));
  }
  seed.dispose();
  optimizer.step(1 / SCALE);
  zeroGrad(m.params.all());
  return loss;
}

async function weights(m: CausalLM): Promise<Map<string, Float32Array>> {
  return new Map(await Promise.all([...m.params.tensors].map(async ([name, t]) => [name, (await t.toArray()) as Float32Array] as const)));
}

for (const lora of [false, true]) {
  test(`${lora ? 'LoRA' : 'full'}: each weight cast once a step over ${K} micro-batches and their replays; the uncached steps' bits`, async () => {
    await initGpu();
    const cached = model(lora), plain = model(lora);
    // The products' weights: every matrix but the (untied) input embedding, which is gathered, not cast.
    const W = cached.params.specs.filter((s) => s.shape.length === 2 && s.role !== 'embedding').length;
    assert.is(W, (lora ? 3 : 1) * (4 * 2 + 1), 'four products a layer and the head, and with LoRA two adapters on each');
    const head = lora ? 3 : 1; // the head's weight and adapters, outside the checkpointed layers
    const optimizer = optimizerOf(cached), plainOptimizer = optimizerOf(plain);
    const step = new TrainStep({
      params: cached.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: LR, totalSteps: 3 }), clipNorm: null,
      lossScaler: new LossScaler({ ...GRAD_SCALER_DEFAULTS, initScale: SCALE }),
    });
    const losses: number[] = [];
    for (let s = 0; s < 2; s++) {
      ledger.reset();
      const r = await step.run(microsOf(cached));
      const withCache = casts();
      ledger.reset();
      const loss = await uncachedStep(plain, plainOptimizer, microsOf(plain));
      const without = casts();
      assert.is(r.skipped, false);
      assert.is(r.loss, loss, `step ${s + 1}: the loss`);
      losses.push(loss);
      // Cached: W weight casts in the first forward, none in the replays; uncached: K·W in the forwards and
      // K·(W - head) in the replays. The activations' casts are the same.
      assert.is(withCache['policy-forward castF16Weight'], W, `step ${s + 1}: weight casts`);
      assert.is(withCache['policy-backward-recompute castF16Weight'], undefined, `step ${s + 1}: the replays reuse the copies`);
      assert.is(without['policy-forward castF16'] - withCache['policy-forward castF16'], K * W, `step ${s + 1}: forward casts`);
      assert.is(without['policy-backward-recompute castF16'] - withCache['policy-backward-recompute castF16'], K * (W - head), `step ${s + 1}: replay casts`);
      assert.is(without['policy-backward castF16'], withCache['policy-backward castF16'], `step ${s + 1}: the backward's casts of output gradients`);
      console.log(`  ${lora ? 'LoRA' : 'full'} step ${s + 1}: ${K * W + K * (W - head)} weight casts uncached, ${W} cached`);
      const [a, b] = [await weights(cached), await weights(plain)];
      for (const [name, w] of a) assert.ok(w.every((v, i) => v === b.get(name)![i]), `step ${s + 1}: '${name}' not bit-identical`);
    }
    assert.is.not(losses[1], losses[0], 'the first update changed the loss (else the second step compares nothing)');

    // A step that throws in its second micro-batch, after the first cast the weights: no copy outlives it, and the
    // next step casts the weights again.
    const live = pool.liveBytes;
    const [first] = microsOf(cached);
    const boom = () => { cached.tokenLogprobs(Tensor.fromArray(randInt(B * T, cached.config.vocabSize, 60), [B, T], 'i32')); throw new Error('boom'); };
    let thrown: unknown;
    try { await step.run([first!, boom]); } catch (e) { thrown = e; }
    assert.is((thrown as Error)?.message, 'boom');
    assert.is(pool.liveBytes, live, 'the thrown step\'s copies are disposed');
    ledger.reset();
    await step.run(microsOf(cached));
    assert.is(casts()['policy-forward castF16Weight'], W, 'the step after casts the weights again');

    step.dispose();
    optimizer.dispose();
    plainOptimizer.dispose();
    cached.dispose();
    plain.dispose();
  });
}

test.run();
