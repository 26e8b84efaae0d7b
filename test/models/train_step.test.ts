// TrainStep: accumulation, clipping folded into the optimizer, the schedule's lr, one read-back, non-finite steps,
// and nothing created after the first step.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ledger } from '../../engine/ledger.ts';
import { mul, sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { makeOptimizer } from '../../engine/optim.ts';
import { ParameterSet, param } from '../../engine/params.ts';
import { pool } from '../../engine/pool.ts';
import { pipelineCount, submitCount } from '../../engine/runtime.ts';
import { Tensor } from '../../engine/tensor.ts';
import { rng } from '../../engine/random.ts';
import { copyBatch } from '../support/copy_task.ts';
import { DEMO_CONFIG } from '../../train/demo.ts';
import { makeSchedule } from '../../train/schedule.ts';
import { NonFiniteError, TrainStep } from '../../train/step.ts';
import { CausalLM } from '../../models/causal_lm.ts';
import { initParameters } from '../../models/init.ts';
import { assertClose, download, initGpu, randn } from '../support/util.ts';

const N = 37;
const C = [0.5, 0.25]; // each micro-batch's loss scale: loss_k = C[k] · Σ w·x_k, so grad = Σ_k C[k] x_k

/** A parameter set with one matrix w [1, N] (decayed) and a bias b [N] (not), and the two micro-batches' inputs. */
function linearProblem() {
  const params = new ParameterSet([param('w', [1, N], 'weight'), param('b', [N], 'bias')], (s) => Float32Array.from(randn(N, s.name === 'w' ? 1 : 2)));
  const xs = [randn(N, 3, 2), randn(N, 4, 2)];
  const inputs = xs.map((x) => Tensor.fromArray(x, [N]).keep());
  const micros = inputs.map((x, k) => () => sumLastDim(mul(reshape(params.get('w'), [N]), x), false, C[k]));
  const microsB = inputs.map((x, k) => () => sumLastDim(mul(params.get('b'), x), false, C[k]));
  return { params, xs, inputs, micros, microsB };
}

test('lr from the schedule, the loss summed over micro-batches, clip_grad_norm_ semantics, AdamW on scaled gradients', async () => {
  await initGpu();
  const { params, xs, inputs, micros } = linearProblem();
  const schedule = makeSchedule({ kind: 'linear', lr: 0.1, totalSteps: 4, warmupSteps: 1 });
  const opt = makeOptimizer('adamw', params.entries(), { lr: 0, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });
  const clipNorm = 1;
  const ts = new TrainStep({ params, optimizer: opt, schedule, clipNorm });
  // float64 reference of w (b gets no gradient from these micro-batches: it is skipped, as torch skips it).
  const g = Float64Array.from({ length: N }, (_, i) => C[0] * xs[0][i] + C[1] * xs[1][i]);
  const norm = Math.sqrt(g.reduce((s, v) => s + v * v, 0));
  const w = Float64Array.from(await params.get('w').toArray());
  const b0 = await download(params.get('b'));
  const m = new Float64Array(N), v = new Float64Array(N);
  for (let s = 0; s < 3; s++) {
    const wBefore = Float64Array.from(await params.get('w').toArray());
    const loss = wBefore.reduce((acc, wi, i) => acc + wi * g[i], 0);
    const r = await ts.run(micros);
    const lr = [0, 0.1, 0.1 * 2 / 3][s];
    assert.is(r.step, s + 1);
    assert.ok(Math.abs(r.lr - lr) < 1e-15, `lr ${r.lr} vs ${lr}`);
    assert.ok(Math.abs(r.loss - loss) <= 1e-5 * Math.abs(loss), `loss ${r.loss} vs ${loss}`);
    assert.ok(Math.abs(r.gradNorm - norm) <= 1e-6 * norm, `norm ${r.gradNorm} vs ${norm}`);
    assert.ok(norm > clipNorm && r.clipped, 'clipping fires');
    const coef = clipNorm / (norm + 1e-6), t = s + 1;
    for (let i = 0; i < N; i++) {
      const gi = coef * g[i];
      w[i] *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.95 * v[i] + 0.05 * gi * gi;
      w[i] -= (lr / (1 - 0.9 ** t)) * m[i] / (Math.sqrt(v[i] / (1 - 0.95 ** t)) + 1e-8);
    }
    assertClose(await download(params.get('w')), w, 1e-6, `w after step ${t}`);
    assert.ok(params.all().every((p) => p.grad === null), 'gradients zeroed');
  }
  assert.equal(await download(params.get('b')), b0, 'a parameter without gradient is untouched');
  assert.equal(ts.stateDict(), { stepCount: 3 });
  // No clipping when the norm is below clipNorm; none at all with clipNorm null.
  const loose = new TrainStep({ params, optimizer: opt, schedule, clipNorm: 100 });
  assert.is((await loose.run(micros)).clipped, false);
  loose.loadStateDict({ stepCount: 1 });
  assert.is(loose.stepCount, 1);
  assert.throws(() => loose.loadStateDict({ stepCount: -1 }), /stepCount -1/);
  for (const t of [ts, loose]) t.dispose();
  opt.dispose(); params.dispose();
  for (const t of inputs) t.dispose();
});

test('a non-finite loss or norm: NonFiniteError naming the step, parameters untouched, gradients dropped', async () => {
  await initGpu();
  const { params, inputs, micros, microsB } = linearProblem();
  const opt = makeOptimizer('rmsprop', params.entries(), { lr: 1e-2, weightDecay: 0.1 });
  const ts = new TrainStep({ params, optimizer: opt, schedule: makeSchedule({ kind: 'constant', lr: 1e-2, totalSteps: 10 }), clipNorm: 1 });
  await ts.run(micros);
  const before = await Promise.all(params.all().map(download));
  const inf = Tensor.fromArray(new Float32Array(N).fill(Infinity), [N]).keep();
  const huge = Tensor.fromArray(new Float32Array(N).fill(1e30), [N]).keep();
  // Infinite loss (and norm): the loss is named first.
  await ts.run([micros[0], () => sumLastDim(mul(reshape(params.get('w'), [N]), inf))]).then(
    () => assert.unreachable('accepted an infinite loss'),
    (e) => { assert.ok(e instanceof NonFiniteError); assert.is(e.step, 2); assert.is(e.what, 'loss'); });
  // A finite loss (about 1e31) whose gradient (1e30 per element) overflows the sum of squares in f32.
  await ts.run([() => sumLastDim(mul(params.get('b'), huge))]).then(
    () => assert.unreachable('accepted an infinite norm'),
    (e) => { assert.ok(e instanceof NonFiniteError, String(e)); assert.is(e.step, 2); assert.is(e.what, 'grad_norm'); });
  assert.is(ts.stepCount, 1, 'the failed steps do not count');
  assert.ok(params.all().every((p) => p.grad === null), 'gradients dropped');
  const after = await Promise.all(params.all().map(download));
  assert.equal(after, before, 'parameters untouched');
  assert.is((await ts.run(microsB)).step, 2, 'training goes on');
  ts.dispose(); opt.dispose(); params.dispose();
  for (const t of [...inputs, inf, huge]) t.dispose();
});

test('steps 2 and 3 create nothing: same pipelines, same live pool bytes; micro-batches + 1 submits per step', async () => {
  await initGpu();
  const c = DEMO_CONFIG, B = 2, L = 4, T = 2 * L, micros = 3;
  const model = new CausalLM(c, initParameters(c, 11)), params = model.params;
  const opt = makeOptimizer('adamw', params.entries(), { lr: 1e-3, betas: [0.9, 0.95], weightDecay: 0.01 });
  const ts = new TrainStep({ params, optimizer: opt, schedule: makeSchedule({ kind: 'cosine', lr: 1e-3, totalSteps: 8, warmupSteps: 2 }), clipNorm: 1 });
  const data = rng(5);
  const batches = Array.from({ length: micros }, () => {
    const { ids, targets } = copyBatch(data, B, L);
    return { ids: Tensor.fromArray(ids, [B, T], 'i32').keep(), targets: Tensor.fromArray(targets, [B * T], 'i32').keep() };
  });
  const fns = batches.map(({ ids, targets }) => () => sumLastDim(reshape(crossEntropy(reshape(model.forward(ids), [B * T, c.vocabSize]), targets), [1]), false, 1 / micros));
  const live: number[] = [], submits: number[] = [], pipes: number[] = [], losses: number[] = [];
  ledger.reset();
  for (let step = 0; step < 4; step++) {
    const s0 = submitCount();
    losses.push((await ts.run(fns)).loss);
    submits.push(submitCount() - s0);
    live.push(pool.liveBytes);
    pipes.push(pipelineCount());
  }
  assert.equal(submits, [4, 4, 4, 4], `submits per step: ${submits}`);
  assert.equal(live.slice(1), [live[1], live[1], live[1]], `live bytes after each step: ${live}`);
  assert.equal(pipes.slice(1), [pipes[1], pipes[1], pipes[1]], `pipelines after each step: ${pipes}`);
  assert.ok(losses.every(Number.isFinite) && losses[3] < losses[0], `losses ${losses}`);
  assert.ok(ledger.all().some((e) => e.op === 'squaredSum' && e.phase === 'optimizer'));
  ts.dispose(); opt.dispose(); params.dispose();
  for (const b of batches) { b.ids.dispose(); b.targets.dispose(); }
});

test.run();
