// The squared global gradient norm on the GPU against a float64 CPU sum; deterministic, written where asked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gradNormSquared } from '../../engine/ops/grad_norm.ts';
import { deviceLimits } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor } from '../../engine/tensor.ts';
import { SQUARED_SUM_SHAPES, squaredSumSlots } from '../../kernels/squared_sum.ts';
import { initGpu, randn } from '../support/util.ts';

test('ragged tensors (1, 7, 4096, 4097, 70001 and an empty one) in few dispatches: float64 sum, bit-identical reruns, out[index]', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const sizes = [1, 7, 0, 4096, 4097, 70001];
  const data = sizes.map((n, i) => randn(n, 40 + i, 0.01 * (i + 1)));
  const tensors = data.map((d) => Tensor.fromArray(d, [d.length]));
  let ref = 0;
  for (const d of data) for (const x of d) ref += x * x;
  ledger.reset();
  const a = gradNormSquared(tensors), b = gradNormSquared(tensors);
  // Each call: the five non-empty tensors in dispatches of squaredSumSlots, then the final pass.
  const count = (op: string) => ledger.all().filter((e) => e.op === op).reduce((n, e) => n + e.dispatches, 0);
  assert.equal([count('squaredSum'), count('squaredSumFinal')], [2 * Math.ceil(5 / squaredSumSlots(deviceLimits())), 2]);
  const [va, vb] = [await a.item(), await b.item()];
  assert.ok(Math.abs(va - ref) / ref < 1e-6, `${va} vs float64 ${ref}`);
  assert.is(new Uint32Array(Float32Array.of(va).buffer)[0], new Uint32Array(Float32Array.of(vb).buffer)[0], 'bit-identical');
  // Both device shapes of the partial sums (the op takes this device's), against float64.
  for (const [name, shape] of Object.entries(SQUARED_SUM_SHAPES)) {
    const sum = gradNormSquared(tensors, undefined, 0, shape);
    const v = await sum.item();
    assert.ok(Math.abs(v - ref) / ref < 1e-6, `${name} shape: ${v} vs float64 ${ref}`);
    sum.dispose();
  }
  const out = Tensor.fromArray([7, 7, 7], [3]);
  gradNormSquared(tensors.slice(0, 2), out, 1);
  const small = data[0][0] ** 2 + data[1].reduce((s, x) => s + x * x, 0);
  const got = await out.toArray();
  assert.is(got[0], 7); assert.is(got[2], 7);
  assert.ok(Math.abs(got[1] - small) / small < 1e-6, `${got[1]} vs ${small}`);
  gradNormSquared([], out, 0);
  assert.is((await out.toArray())[0], 0, 'no tensors: 0');
  assert.throws(() => gradNormSquared(tensors, out, 3), /index 3 into f32 \[3\]/);
  for (const t of [a, b, out, ...tensors]) t.dispose();
  assert.is(pool.liveBytes, base, 'partials returned to the pool');
});

test.run();
