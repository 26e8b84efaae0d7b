// AdamW against torch (fixture) and a float64 reference; sharding, checkpoints and the ledger.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ledger } from '../../engine/ledger.ts';
import { AdamW, RMSprop, makeOptimizer, shardOf, type AdamWOptions, type Optimizer } from '../../engine/optim.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { pool } from '../../engine/pool.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { Tensor } from '../../engine/tensor.ts';
import { adamwCall, adamwSlots } from '../../kernels/adamw.ts';
import { rmspropCall } from '../../kernels/rmsprop.ts';
import { ELEMENTWISE_SHAPES, type ElementwiseShape } from '../../kernels/spec.ts';
import { assertClose, download, initGpu, randn } from '../support/util.ts';
import { fixture } from '../support/paths.ts';

const FORWARD_TOL = 1e-5;
const UPDATE_TOL = 1e-4;
const OPTIONS: AdamWOptions = { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 };

/** float64 torch.optim.AdamW on one parameter; step t counts the steps this parameter had a gradient. */
class ReferenceAdamW {
  m: Float64Array;
  v: Float64Array;
  t = 0;
  constructor(readonly p: Float64Array, readonly decay: boolean, readonly o: AdamWOptions) {
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
  }

  step(g: ArrayLike<number>): void {
    const { lr, betas: [b1, b2], eps, weightDecay } = this.o;
    this.t++;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    for (let i = 0; i < this.p.length; i++) {
      if (this.decay) this.p[i] *= 1 - lr * weightDecay;
      this.m[i] = b1 * this.m[i] + (1 - b1) * g[i];
      this.v[i] = b2 * this.v[i] + (1 - b2) * g[i] * g[i];
      this.p[i] -= (lr * this.m[i] / bc1) / (Math.sqrt(this.v[i] / bc2) + eps);
    }
  }
}

function parameter(data: ArrayLike<number>): Tensor {
  const t = Tensor.fromArray(data, [data.length]);
  t.requiresGrad = true;
  return t;
}

function setGrad(p: Tensor, g: ArrayLike<number>): void {
  p.grad?.dispose();
  p.grad = Tensor.fromArray(g, [g.length]);
}

const difference = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (x, i) => x - b[i]);

test('shardOf: 4-element blocks, equal shards but the last, empty shards past the end', () => {
  assert.equal([0, 1, 2].map((k) => shardOf(130, k, 3)), [{ begin: 0, end: 44 }, { begin: 44, end: 88 }, { begin: 88, end: 130 }]);
  assert.equal([0, 1, 2].map((k) => shardOf(7, k, 3)), [{ begin: 0, end: 4 }, { begin: 4, end: 7 }, { begin: 7, end: 7 }]);
  assert.equal([0, 1].map((k) => shardOf(1, k, 2)), [{ begin: 0, end: 1 }, { begin: 1, end: 1 }]);
  assert.equal(shardOf(13, 0, 1), { begin: 0, end: 13 });
  for (let numel = 0; numel <= 40; numel++) {
    for (let count = 1; count <= 5; count++) {
      const shards = Array.from({ length: count }, (_, k) => shardOf(numel, k, count));
      shards.forEach((s, k) => {
        assert.is(s.begin, k === 0 ? 0 : shards[k - 1].end, `numel ${numel}, ${count} shards: contiguous`);
        if (s.end > s.begin) assert.is(s.begin % 4, 0, 'starts on a block');
      });
      assert.is(shards[count - 1].end, numel, `numel ${numel}, ${count} shards: covers the tensor`);
    }
  }
  assert.throws(() => shardOf(10, 3, 3), /shardIndex must be an integer in \[0, 3\)/);
  assert.throws(() => shardOf(10, 0, 0), /shardCount must be a positive integer/);
  assert.throws(() => shardOf(10.5, 0, 2), /numel must be a non-negative integer/);
});

test('PyTorch fixture: three steps of torch.optim.AdamW', async () => {
  await initGpu();
  const file = SafetensorsFile.open(fixture('hf/ops/expected.safetensors'));
  try {
    const p0 = file.read('adamw.p0') as Float32Array, grads = file.read('adamw.grads') as Float32Array, after = file.read('adamw.after') as Float32Array;
    const n = p0.length;
    const p = parameter(p0);
    const opt = new AdamW([{ name: 'p', param: p, decay: true }], OPTIONS);
    let before: ArrayLike<number> = p0, refBefore: ArrayLike<number> = p0;
    for (let s = 0; s < 3; s++) {
      setGrad(p, grads.subarray(s * n, (s + 1) * n));
      opt.step();
      const ours = await download(p), ref = after.subarray(s * n, (s + 1) * n);
      assertClose(ours, ref, UPDATE_TOL, `after[${s}]`);
      // The parameter hides the update behind p0: the update itself is the meaningful check.
      assertClose(difference(ours, before), difference(ref, refBefore), UPDATE_TOL, `update of step ${s + 1}`);
      before = ours;
      refBefore = ref;
    }
    opt.dispose();
    p.grad!.dispose();
    p.dispose();
  } finally {
    file.close();
  }
});

test('float64 reference: ragged sizes, decay off for one, a parameter without gradient at first', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const specs = [{ name: 'a', numel: 1, decay: true }, { name: 'b', numel: 7, decay: false }, { name: 'c', numel: 130, decay: true },
    { name: 'late', numel: 33, decay: true }];
  const o: AdamWOptions = { lr: 3e-2, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.5 };
  const refs = specs.map((s, i) => new ReferenceAdamW(randn(s.numel, 100 + i), s.decay, o));
  const params = refs.map((r) => parameter(r.p));
  const opt = new AdamW(specs.map((s, i) => ({ name: s.name, param: params[i], decay: s.decay })), o);
  assert.is(opt.stateBytes(), 8 * (1 + 7 + 130 + 33));
  for (let step = 0; step < 4; step++) {
    const before = await Promise.all(params.map(download));
    specs.forEach((s, i) => {
      if (s.name === 'late' && step === 0) return; // no gradient: skipped, its step count stays 0
      const g = randn(s.numel, 1000 * step + i, 0.1 + i); // differently scaled gradients per parameter
      setGrad(params[i], g);
      refs[i].step(g);
    });
    opt.step();
    opt.zeroGrad();
    assert.ok(params.every((p) => p.grad === null), 'zeroGrad drops the gradients');
    for (const [i, s] of specs.entries()) {
      const ours = await download(params[i]);
      assertClose(ours, refs[i].p, FORWARD_TOL, `${s.name} after step ${step + 1}`);
      if (!(s.name === 'late' && step === 0))
        assertClose(difference(ours, before[i]), difference(refs[i].p, before[i]), UPDATE_TOL, `${s.name} update of step ${step + 1}`);
    }
  }
  const state = await opt.stateDict();
  assert.equal(state.step, { a: 4, b: 4, c: 4, late: 3 });
  specs.forEach((s, i) => {
    assertClose(state.tensors[`${s.name}.m`], refs[i].m, FORWARD_TOL, `${s.name}.m`);
    assertClose(state.tensors[`${s.name}.v`], refs[i].v, FORWARD_TOL, `${s.name}.v`);
  });
  opt.dispose();
  for (const p of params) p.dispose();
  assert.is(pool.liveBytes, base, 'states and parameters returned to the pool');
});

/** Parameters of these sizes with fixed values and gradients, for runs that must agree bit for bit. */
const SIZES = [1, 7, 130, 13];
const freshParams = () => SIZES.map((n, i) => parameter(randn(n, 7 + i)));
const entries = (params: Tensor[]) => params.map((param, i) => ({ name: `p${i}`, param, decay: i !== 1 }));
const gradsOf = (step: number) => SIZES.map((n, i) => randn(n, 50 * step + i));

async function runSteps(opts: Optimizer[], params: Tensor[], steps: number[]): Promise<void> {
  for (const step of steps) {
    params.forEach((p, i) => setGrad(p, gradsOf(step)[i]));
    for (const opt of opts) opt.step();
  }
  for (const p of params) { p.grad!.dispose(); p.grad = null; }
}

const bits = async (params: Tensor[]) => Promise.all(params.map(async (p) => [...new Uint32Array((await p.toArray()).buffer, 0, p.numel)]));

test('sharded states (2 and 3 shards) update exactly as unsharded', async () => {
  await initGpu();
  const whole = freshParams();
  const unsharded = new AdamW(entries(whole), OPTIONS);
  await runSteps([unsharded], whole, [0, 1, 2]);
  const wholeState = await unsharded.stateDict();
  for (const shardCount of [2, 3]) {
    const params = freshParams();
    const shards = Array.from({ length: shardCount }, (_, shardIndex) => new AdamW(entries(params), OPTIONS, { shardIndex, shardCount }));
    await runSteps(shards, params, [0, 1, 2]);
    assert.equal(await bits(params), await bits(whole), `${shardCount} shards: parameters bit for bit`);
    assert.is(shards.reduce((s, o) => s + o.stateBytes(), 0), unsharded.stateBytes(), `${shardCount} shards: state bytes add up`);
    const states = await Promise.all(shards.map((o) => o.stateDict()));
    for (const key of Object.keys(wholeState.tensors)) {
      const joined = states.flatMap((s) => [...(s.tensors[key] ?? [])]);
      assert.equal(joined, [...wholeState.tensors[key]], `${shardCount} shards: ${key} is the concatenation of the shards'`);
    }
    for (const o of shards) o.dispose();
    for (const p of params) p.dispose();
  }
  unsharded.dispose();
  for (const p of whole) p.dispose();
});

test('stateDict round trip: a restored optimizer continues identically', async () => {
  await initGpu();
  const original = freshParams();
  const opt = new AdamW(entries(original), OPTIONS);
  await runSteps([opt], original, [0, 1]);
  const restoredParams = await Promise.all(original.map(async (p) => parameter(await p.toArray())));
  const restored = new AdamW(entries(restoredParams), OPTIONS);
  restored.loadStateDict(await opt.stateDict());
  await runSteps([opt], original, [2]);
  await runSteps([restored], restoredParams, [2]);
  assert.equal(await bits(restoredParams), await bits(original));
  const [a, b] = await Promise.all([opt.stateDict(), restored.stateDict()]);
  assert.equal(b.step, { p0: 3, p1: 3, p2: 3, p3: 3 });
  assert.equal(b, a);
  opt.dispose(); restored.dispose();
  for (const p of [...original, ...restoredParams]) p.dispose();
});

test('loadStateDict reports every mismatch at once and keeps the old state', async () => {
  await initGpu();
  const params = freshParams();
  const opt = new AdamW(entries(params), OPTIONS, { shardIndex: 0, shardCount: 2 });
  await runSteps([opt], params, [0]);
  const good = await opt.stateDict();
  const bad = { kind: good.kind, step: { ...good.step, ghost: 1 }, tensors: { ...good.tensors, 'p2.m': new Float32Array(130) } };
  delete (bad.tensors as Record<string, Float32Array>)['p0.v'];
  try {
    opt.loadStateDict(bad);
    assert.unreachable('loadStateDict accepted a bad dict');
  } catch (e) {
    const msg = (e as Error).message;
    for (const needle of ["'p0' needs all of p0.m, p0.v", 'p2.m has 130 elements, this shard holds 68', "step of 'ghost' names no parameter"])
      assert.ok(msg.includes(needle), `${JSON.stringify(msg)} should contain ${JSON.stringify(needle)}`);
  }
  assert.equal(await opt.stateDict(), good);
  opt.dispose();
  for (const p of params) p.dispose();
});

test('ledger: the shards in dispatches of adamwSlots each, in the optimizer phase, 15 flops per element', async () => {
  await initGpu();
  const params = freshParams();
  const opt = new AdamW(entries(params), OPTIONS, { shardIndex: 1, shardCount: 2 });
  const owned = SIZES.map((n) => { const r = shardOf(n, 1, 2); return r.end - r.begin; });
  ledger.reset();
  await runSteps([opt], params, [0]);
  const rows = ledger.all().filter((e) => e.op === 'adamw');
  const n = owned.reduce((a, b) => a + b, 0);
  assert.equal(rows.map((e) => [e.phase, e.dispatches, e.flops, e.bytesRead, e.bytesWritten]),
    [['optimizer', Math.ceil(owned.filter((k) => k > 0).length / adamwSlots(deviceLimits())), 15 * n, 16 * n, 12 * n]]);
  opt.dispose();
  for (const p of params) p.dispose();
});

test('several parameters a dispatch: the same bits as an optimizer per parameter; one a step behind waits for its own dispatch', async () => {
  await initGpu();
  const sizes = [1, 7, 64, 300, 1025, 4097, 33, 2];
  const LATE = 5; // no gradient at the first step: its bias corrections then differ from the others'
  const make = () => sizes.map((n, i) => parameter(randn(n, 90 + i)));
  const together = make(), alone = make();
  const named = (params: Tensor[]) => params.map((param, i) => ({ name: `q${i}`, param, decay: i % 3 !== 0 }));
  const one = new AdamW(named(together), OPTIONS);
  const each = named(alone).map((e) => new AdamW([e], OPTIONS));
  const slots = adamwSlots(deviceLimits());
  for (let step = 0; step < 3; step++) {
    for (const params of [together, alone]) params.forEach((p, i) => { if (step > 0 || i !== LATE) setGrad(p, randn(sizes[i], 700 + 10 * step + i)); });
    ledger.reset();
    one.step(0.75);
    const dispatches = ledger.all().filter((e) => e.op === 'adamw').reduce((a, e) => a + e.dispatches, 0);
    const runs = step === 0 ? [sizes.length - 1] : [LATE, 1, sizes.length - LATE - 1];
    assert.is(dispatches, runs.reduce((a, k) => a + Math.ceil(k / slots), 0), `step ${step + 1}: runs of ${runs} parameters`);
    for (const opt of each) opt.step(0.75);
    for (const p of [...together, ...alone]) { p.grad?.dispose(); p.grad = null; }
  }
  assert.equal(await bits(together), await bits(alone));
  const states = await one.stateDict();
  const separate = await Promise.all(each.map((o) => o.stateDict()));
  assert.equal(states.step, Object.assign({}, ...separate.map((d) => d.step)));
  assert.equal(states.step[`q${LATE}`], 2);
  const wordsOf = (t: Float32Array) => [...new Uint32Array(t.buffer, t.byteOffset, t.length)];
  for (const d of separate) for (const [k, t] of Object.entries(d.tensors)) assert.equal(wordsOf(states.tensors[k]), wordsOf(t), k);
  for (const o of [one, ...each]) o.dispose();
  for (const p of [...together, ...alone]) p.dispose();
});

test('the slot kernels in both device shapes (a thread an element; 64 threads of up to 64): the same bits', async () => {
  await initGpu();
  const sizes = [1, 300, 4097, 64 * 64 * 17 + 3];
  const step = { beta1: 0.9, beta2: 0.95, eps: 1e-8, stepSize: 1e-2, bc2Sqrt: 0.3, gradScale: 0.5 };
  const run = async (shape: ElementwiseShape) => {
    const ts = sizes.map((n, i) => [randn(n, 900 + i), randn(n, 950 + i, 0.1), randn(n, 980 + i, 0.01), randn(n, 990 + i, 0.001).map(Math.abs)].map((d) => Tensor.fromArray(d, [n])));
    const ranges = sizes.map((n, i) => ({ n, offset: 0, decayFactor: i % 2 ? 1 : 0.999 }));
    launch(adamwCall(deviceLimits(), ranges, step, shape), ts.map(([, g]) => g), ts.flatMap(([p, , m, v]) => [p, m, v]));
    const rms = sizes.map((n, i) => ({ n, offset: 0, weightDecay: i % 2 ? 0 : 0.01 }));
    launch(rmspropCall(deviceLimits(), rms, { alpha: 0.99, eps: 1e-8, lr: 1e-3, gradScale: 2 }, shape), ts.map(([, g]) => g), ts.flatMap(([p, , m]) => [p, m]));
    const out = await Promise.all(ts.flat().map(async (t) => [...new Uint32Array((await t.toArray()).buffer, 0, t.numel)]));
    for (const t of ts.flat()) t.dispose();
    return out;
  };
  assert.equal(await run(ELEMENTWISE_SHAPES.cpu), await run(ELEMENTWISE_SHAPES.gpu));
});

test('AdamW and RMSprop in quads (vec4f bindings): the same bits as in words, in both device shapes, at offsets; ranges not in quads refused', async () => {
  await initGpu();
  const sizes = [4, 300, 4096 + 8, 64 * 64 * 17 + 4], offsets = [0, 8, 4, 0];
  const step = { beta1: 0.9, beta2: 0.95, eps: 1e-8, stepSize: 1e-2, bc2Sqrt: 0.3, gradScale: 0.5 };
  const run = async (shape: ElementwiseShape, quads: boolean) => {
    // param and grad hold offset + n elements, the range the last n; m and v the range's n.
    const ts = sizes.map((n, i) => [randn(offsets[i] + n, 700 + i), randn(offsets[i] + n, 750 + i, 0.1), randn(n, 780 + i, 0.01), randn(n, 790 + i, 0.001).map(Math.abs)]
      .map((d) => Tensor.fromArray(d, [d.length])));
    const ranges = sizes.map((n, i) => ({ n, offset: offsets[i], decayFactor: i % 2 ? 1 : 0.999 }));
    launch(adamwCall(deviceLimits(), ranges, step, shape, quads), ts.map(([, g]) => g), ts.flatMap(([p, , m, v]) => [p, m, v]));
    const rms = sizes.map((n, i) => ({ n, offset: offsets[i], weightDecay: i % 2 ? 0 : 0.01 }));
    launch(rmspropCall(deviceLimits(), rms, { alpha: 0.99, eps: 1e-8, lr: 1e-3, gradScale: 2 }, shape, quads), ts.map(([, g]) => g), ts.flatMap(([p, , m]) => [p, m]));
    const out = await Promise.all(ts.flat().map(async (t) => [...new Uint32Array((await t.toArray()).buffer, 0, t.numel)]));
    for (const t of ts.flat()) t.dispose();
    return out;
  };
  const words = await run(ELEMENTWISE_SHAPES.gpu, false);
  assert.equal(await run(ELEMENTWISE_SHAPES.gpu, true), words, 'quads, a thread a quad');
  assert.equal(await run(ELEMENTWISE_SHAPES.cpu, true), words, 'quads, 64 threads of up to 64');
  assert.throws(() => adamwCall(deviceLimits(), [{ n: 6, offset: 0, decayFactor: 1 }], step, ELEMENTWISE_SHAPES.gpu, true), /not all multiples of 4/);
  assert.throws(() => adamwCall(deviceLimits(), [{ n: 8, offset: 2, decayFactor: 1 }], step, ELEMENTWISE_SHAPES.gpu, true), /not all multiples of 4/);
  assert.throws(() => rmspropCall(deviceLimits(), [{ n: 6, offset: 0, weightDecay: 0 }], { alpha: 0.99, eps: 1e-8, lr: 1e-3, gradScale: 1 }, ELEMENTWISE_SHAPES.gpu, true), /rmsprop in quads/);
});

test('options are validated', async () => {
  await initGpu();
  const p = parameter([1, 2]);
  assert.throws(() => new AdamW([{ name: 'p', param: p, decay: true }, { name: 'p', param: p, decay: false }],
    { ...OPTIONS, betas: [0.9, 1] }), /betas\[1\] 1 not in \[0, 1\).*'p' listed twice/);
  p.dispose();
});

test('gradScale: step(s) on gradients g equals step() on s·g, bit for bit (s exact in f32); NaN-free validation', async () => {
  await initGpu();
  const s = 0.375; // f32 multiply of f32 values by it rounds once, as Math.fround(g * s) does on the host
  const scaled = freshParams(), prescaled = freshParams();
  const a = new AdamW(entries(scaled), OPTIONS), b = new AdamW(entries(prescaled), OPTIONS);
  for (const step of [0, 1, 2]) {
    scaled.forEach((p, i) => setGrad(p, gradsOf(step)[i]));
    prescaled.forEach((p, i) => setGrad(p, Float32Array.from(gradsOf(step)[i], (g) => g * s)));
    a.step(s);
    b.step();
  }
  assert.equal(await bits(scaled), await bits(prescaled));
  assert.throws(() => a.step(0), /gradScale 0 must be finite and > 0/);
  assert.throws(() => a.step(NaN), /gradScale NaN/);
  a.dispose(); b.dispose();
  for (const p of [...scaled, ...prescaled]) { p.grad?.dispose(); p.grad = null; p.dispose(); }
});

test('state dicts name their optimizer; a dict of another kind is refused', async () => {
  await initGpu();
  const params = freshParams();
  const adamw = makeOptimizer('adamw', entries(params), OPTIONS), rmsprop = makeOptimizer('rmsprop', entries(params), { lr: 1e-2 });
  assert.ok(adamw instanceof AdamW && rmsprop instanceof RMSprop);
  assert.equal([adamw.kind, rmsprop.kind], ['adamw', 'rmsprop']);
  await runSteps([adamw, rmsprop], params, [0]);
  const [da, dr] = [await adamw.stateDict(), await rmsprop.stateDict()];
  assert.is(da.kind, 'adamw');
  assert.equal(Object.keys(dr.tensors).sort(), ['p0.square_avg', 'p1.square_avg', 'p2.square_avg', 'p3.square_avg']);
  assert.is(rmsprop.stateBytes(), 4 * SIZES.reduce((a, b) => a + b, 0));
  assert.throws(() => adamw.loadStateDict(dr), /AdamW.loadStateDict: the dict is of optimizer "rmsprop", this one is 'adamw'/);
  assert.throws(() => rmsprop.loadStateDict(da), /RMSprop.loadStateDict: the dict is of optimizer "adamw"/);
  assert.throws(() => makeOptimizer('sgd' as never, entries(params), { lr: 1 }), /unknown optimizer "sgd" \(known: adamw, rmsprop\)/);
  adamw.dispose(); rmsprop.dispose();
  for (const p of params) p.dispose();
});

test.run();
