import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { gelu, silu, swiglu } from '../../engine/ops/activations.ts';
import { pool } from '../../engine/pool.ts';
import { numelOf, Tensor } from '../../engine/tensor.ts';
import { deviceLimits, elementwiseShape, launch } from '../../engine/launch.ts';
import { ACTIVATIONS, activationBackwardCall, activationCall, gatedActivationBackwardCall, gatedActivationCall, type Activation } from '../../kernels/activation.ts';
import { assertClose, download, finiteDiff, initGpu, randn, upload } from '../support/util.ts';

// Float64 references. erfc by its power series below t = 2.5 (terms reach exp(t²) ≈ 500: 1e-13 absolute) and by
// its continued fraction erfc(t) = exp(-t²)/√π / (t + (1/2)/(t + 1/(t + (3/2)/(t + ...)))) above.
function erfc64(t: number): number {
  if (t < 0) return 2 - erfc64(-t);
  if (t < 2.5) {
    let sum = 0, term = t;
    for (let n = 0; Math.abs(term) > 1e-17; n++) { sum += term / (2 * n + 1); term *= (-t * t) / (n + 1); }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = t;
  for (let k = 200; k >= 1; k--) f = t + k / 2 / f;
  return Math.exp(-t * t) / Math.sqrt(Math.PI) / f;
}
const normalCdf64 = (x: number) => 0.5 * erfc64(-x / Math.SQRT2);
const normalPdf64 = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const sigmoid64 = (x: number) => 1 / (1 + Math.exp(-x));

interface Fn64 { value: (x: number) => number; derivative: (x: number) => number }
const GELU: Fn64 = { value: (x) => x * normalCdf64(x), derivative: (x) => normalCdf64(x) + x * normalPdf64(x) };
const SILU: Fn64 = { value: (x) => x * sigmoid64(x), derivative: (x) => sigmoid64(x) * (1 + x * (1 - sigmoid64(x))) };

const map = (a: ArrayLike<number>, f: (v: number, i: number) => number) => Float64Array.from(a, f);

test('float64 references: erfc at tabulated values, derivatives against finite differences', () => {
  // erfc(0.5), erfc(1), erfc(2), erfc(3), erfc(6) from tables.
  const table: [number, number][] = [[0.5, 0.4795001221869535], [1, 0.15729920705028513], [2, 0.004677734981047266],
    [3, 2.209049699858544e-5], [6, 2.1519736712498913e-17]];
  for (const [t, v] of table) assert.ok(Math.abs(erfc64(t) / v - 1) < 1e-12, `erfc(${t}) = ${erfc64(t)}, expected ${v}`);
  // Both branches agree where they meet.
  assert.ok(Math.abs(erfc64(2.5 - 1e-12) / erfc64(2.5) - 1) < 1e-11);
  const x = randn(64, 1, 3);
  const seed = randn(64, 2);
  for (const [name, f] of [['gelu', GELU], ['silu', SILU]] as const) {
    const loss = (v: Float64Array) => v.reduce((s, xi, i) => s + f.value(xi) * seed[i], 0);
    assertClose(map(x, (v, i) => f.derivative(v) * seed[i]), finiteDiff(loss, x), 1e-7, `${name} reference gradient`);
  }
  const gate = randn(64, 3, 3), up = randn(64, 4);
  const swigluLoss = (g: Float64Array, u: Float64Array) => g.reduce((s, gi, i) => s + SILU.value(gi) * u[i] * seed[i], 0);
  assertClose(map(gate, (g, i) => seed[i] * up[i] * SILU.derivative(g)), finiteDiff((g) => swigluLoss(g, up), gate), 1e-7, 'swiglu reference dgate');
  assertClose(map(gate, (g, i) => seed[i] * SILU.value(g)), finiteDiff((u) => swigluLoss(gate, u), up), 1e-7, 'swiglu reference dup');
});

test('gelu and its derivative match float64 elementwise over [-12, 12]', async () => {
  await initGpu();
  const n = 24001;
  const x = map(new Float64Array(n), (_, i) => Math.fround(-12 + (24 * i) / (n - 1)));
  const xt = upload(x, [n], true);
  const y = gelu(xt);
  const seedT = upload(new Float64Array(n).fill(1), [n]);
  const out = await download(y);
  backward(y, seedT);
  const grad = await download(xt.grad!);
  // A few f32 roundings give 4e-7 near 0. In the left tail exp(-x²/2) amplifies the rounding of its argument by
  // x²/2 (x = -5: 2e-6 relative, of a value 1.4e-6), so the bound grows with x². The derivative crosses zero at
  // x = -0.75, hence its absolute floor. Below 1e-30 f32 flushes or underflows: 0 is the right answer there.
  const tol = (v: number) => 5e-7 + 1e-7 * v * v;
  let worst = 0, worstAt = 0;
  for (let i = 0; i < n; i++) {
    const ref = GELU.value(x[i]);
    const err = Math.abs(out[i] - ref);
    if (Math.abs(ref) > 1e-30 && err / Math.abs(ref) > worst) { worst = err / Math.abs(ref); worstAt = x[i]; }
    assert.ok(err <= tol(x[i]) * Math.abs(ref) + 1e-30, `gelu(${x[i]}) = ${out[i]}, float64 ${ref}`);
    const dref = GELU.derivative(x[i]);
    assert.ok(Math.abs(grad[i] - dref) <= tol(x[i]) * Math.abs(dref) + 1e-7, `gelu'(${x[i]}) = ${grad[i]}, float64 ${dref}`);
  }
  console.log(`  gelu on [-12, 12]: worst relative error ${worst.toExponential(2)} at x = ${worstAt}`);
  for (const t of [xt.grad!, xt, y, seedT]) t.dispose();
});

async function checkActivation(name: string, op: (x: Tensor) => Tensor, f: Fn64, shape: number[], seed: number): Promise<void> {
  const n = numelOf(shape);
  const x = randn(n, seed, 3);
  const dy = randn(n, seed + 1);
  const xt = upload(x, shape, true);
  const y = op(xt);
  assert.equal(y.shape, shape);
  assertClose(await download(y), map(x, f.value), 1e-5, `${name} ${shape} forward`);
  const seedT = upload(dy, shape);
  backward(y, seedT);
  assertClose(await download(xt.grad!), map(x, (v, i) => dy[i] * f.derivative(v)), 1e-4, `${name} ${shape} dx`);
  for (const t of [xt.grad!, xt, y, seedT]) t.dispose();
}

const SHAPES = [[1], [7], [33, 7], [130, 1, 33]];

test('gelu and silu forward and backward against float64 at ragged shapes', async () => {
  await initGpu();
  const live = pool.liveBytes;
  for (const shape of SHAPES) {
    await checkActivation('gelu', gelu, GELU, shape, 10 + shape.length);
    await checkActivation('silu', silu, SILU, shape, 20 + shape.length);
  }
  assert.is(pool.liveBytes, live, 'every tensor returned to the pool');
});

test('silu and its gradient stay finite and exact for large |x|', async () => {
  await initGpu();
  const x = [-1e30, -100, -88.75, -20, 20, 88.75, 100, 1e30].map(Math.fround);
  const xt = upload(x, [x.length], true);
  const y = silu(xt);
  const seedT = upload(x.map(() => 1), [x.length]);
  const out = await download(y);
  backward(y, seedT);
  const grad = await download(xt.grad!);
  // Below 1e-36 the GPU may flush exp's denormal results to 0.
  x.forEach((v, i) => {
    const ref = SILU.value(v);
    assert.ok(Math.abs(out[i] - ref) <= 1e-6 * Math.abs(ref) + 1e-36, `silu(${v}) = ${out[i]}, expected ${ref}`);
    const dref = SILU.derivative(v);
    assert.ok(Math.abs(grad[i] - dref) <= 1e-6 * Math.abs(dref) + 1e-36, `silu'(${v}) = ${grad[i]}, expected ${dref}`);
  });
  for (const t of [xt.grad!, xt, y, seedT]) t.dispose();
});

test('swiglu forward and fused backward against float64', async () => {
  await initGpu();
  for (const [k, shape] of SHAPES.entries()) {
    const n = numelOf(shape);
    const gate = randn(n, 30 + k, 3), up = randn(n, 40 + k), dy = randn(n, 50 + k);
    const g = upload(gate, shape, true), u = upload(up, shape, true);
    const y = swiglu(g, u);
    assertClose(await download(y), map(gate, (v, i) => SILU.value(v) * up[i]), 1e-5, `swiglu ${shape} forward`);
    const seedT = upload(dy, shape);
    backward(y, seedT);
    assertClose(await download(g.grad!), map(gate, (v, i) => dy[i] * up[i] * SILU.derivative(v)), 1e-4, `swiglu ${shape} dgate`);
    assertClose(await download(u.grad!), map(gate, (v, i) => dy[i] * SILU.value(v)), 1e-4, `swiglu ${shape} dup`);
    for (const t of [g.grad!, u.grad!, g, u, y, seedT]) t.dispose();
  }
});

test('the activation kernels in quads (a count divisible by 4) give the bits of the same elements in words', async () => {
  await initGpu();
  const n = 4096 + 4;
  const words = n + 1; // not divisible by 4: the kernels take f32 elements
  const data = [randn(words, 200, 4), randn(words, 201), randn(words, 202)];
  const run = async (count: number, fn: Activation) => {
    const [x, up, dy] = data.map((d) => Tensor.fromArray(d.subarray(0, count), [count]));
    const outs = Array.from({ length: 5 }, () => Tensor.empty([count]));
    launch(activationCall(deviceLimits(), fn, count, elementwiseShape()), [x], [outs[0]]);
    launch(activationBackwardCall(deviceLimits(), fn, count, elementwiseShape()), [x, dy], [outs[1]]);
    launch(gatedActivationCall(deviceLimits(), fn, count, 'gated', elementwiseShape()), [x, up], [outs[2]]);
    launch(gatedActivationBackwardCall(deviceLimits(), fn, count, 'gated', elementwiseShape()), [x, up, dy], [outs[3], outs[4]]);
    const bits = await Promise.all(outs.map(async (t) => [...new Uint32Array((await t.toArray()).buffer, 0, n)]));
    for (const t of [x, up, dy, ...outs]) t.dispose();
    return bits;
  };
  for (const fn of Object.keys(ACTIVATIONS) as Activation[]) {
    const [quads, inWords] = [await run(n, fn), await run(words, fn)];
    ['f', "f'", 'f(gate)·up', 'dgate', 'dup'].forEach((what, i) => assert.equal(quads[i], inWords[i], `${fn} ${what}`));
  }
});

test('swiglu rejects mismatched shapes', async () => {
  await initGpu();
  const a = upload([1, 2, 3, 4], [2, 2]), b = upload([1, 2, 3, 4], [4]);
  assert.throws(() => swiglu(a, b), /one shape/);
  a.dispose(); b.dispose();
});

test.run();
