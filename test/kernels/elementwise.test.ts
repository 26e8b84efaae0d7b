import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { scale } from '../../engine/ops/elementwise.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor } from '../../engine/tensor.ts';
import { BINARY_OPS, binaryBroadcastCall, binaryCall, binarySameShapeCall, binarySameShapeKernel, binarySameShapeVec4Kernel, type BinaryOp } from '../../kernels/binary.ts';
import { scaleCall, scaleKernel, scaleVec4Kernel } from '../../kernels/scale.ts';
import { activationBackwardCall, activationCall, gatedActivationBackwardCall, gatedActivationCall } from '../../kernels/activation.ts';
import { ELEMENTWISE_SHAPES, type ElementwiseShape, type KernelCall } from '../../kernels/spec.ts';
import { dropoutCall } from '../../kernels/dropout.ts';
import { embeddingCall } from '../../kernels/embedding.ts';
import { fillCall } from '../../kernels/fill.ts';
import { columnSumCall } from '../../kernels/column_sum.ts';
import { reduceSumCall } from '../../kernels/reduce_sum.ts';
import { tokenLogprobsBackwardCall } from '../../kernels/token_logprobs.ts';
import { accumulateCall } from '../../kernels/accumulate.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';

// Counts that leave a ragged last workgroup, vec4 and scalar (not a multiple of 4) alike.
const COUNTS = [1, 3, 4, 257, 1000, 4099];

const F32 = (v: number) => Math.fround(v);
const REF: Record<BinaryOp, (x: number, y: number) => number> = {
  add: (x, y) => F32(x + y), sub: (x, y) => F32(x - y), mul: (x, y) => F32(x * y), div: (x, y) => F32(x / y),
};

test('same-shape binary kernels (vec4 and scalar) match the broadcasting kernel bit for bit, and float32 arithmetic', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const n of COUNTS) {
    const a = upload(randn(n, n), [n]), b = upload(randn(n, n + 1).map((v) => v + 3), [n]);
    const [A, B] = [await download(a), await download(b)];
    for (const op of Object.keys(BINARY_OPS) as BinaryOp[]) {
      const run = (call: ReturnType<typeof binaryCall>) => { const out = Tensor.empty([n]); launch(call, [a, b], [out]); return out; };
      const broadcast = run(binaryBroadcastCall(deviceLimits(), op, [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n));
      const scalar = run(binarySameShapeCall(deviceLimits(), op, n, false));
      const chosen = binaryCall(deviceLimits(), op, [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n);
      assert.is(chosen.kernel, n % 4 === 0 ? binarySameShapeVec4Kernel : binarySameShapeKernel, `${op} ${n}: the same-shape kernel is chosen`);
      const fast = run(chosen);
      const ref = Float64Array.from(A, (x, i) => REF[op](x, B[i]));
      const what = `${op} n=${n}`;
      assertClose(await download(broadcast), ref, 1e-7, `${what} broadcast`); // WGSL allows division 2.5 ulp off
      assert.equal(await download(scalar), await download(broadcast), `${what} scalar same-shape`);
      assert.equal(await download(fast), await download(broadcast), `${what} ${chosen.kernel === binarySameShapeVec4Kernel ? 'vec4' : 'scalar'} same-shape`);
      for (const t of [broadcast, scalar, fast]) t.dispose();
    }
    a.dispose(); b.dispose();
  }
  assert.throws(() => binarySameShapeCall(deviceLimits(), 'add', 6, true), /not whole vec4s/);
  assert.is(pool.liveBytes, base);
});

test('elementwise shapes: 64 threads of up to 64 elements (a CPU driver) give the bits of a thread an element, over ragged counts', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const { cpu, gpu } = ELEMENTWISE_SHAPES;
  for (const n of [1, 4095, 4096, 3 * 4096 + 5]) { // 4096: the kernels that take quads where the count divides by 4
    const a = upload(randn(n, 3 * n), [n]), b = upload(randn(n, 3 * n + 1), [n]);
    const ids = Tensor.fromArray(Int32Array.from({ length: n }, (_, i) => (i * 7919) % n), [n], 'i32');
    const partials = upload(randn(3 * n, 5 * n), [3, n]);
    const cases: [string, (shape: ElementwiseShape) => KernelCall, Tensor[], number][] = [
      ['gelu', (shape) => activationCall(deviceLimits(), 'gelu', n, shape), [a], 1],
      ['geluBackward', (shape) => activationBackwardCall(deviceLimits(), 'gelu', n, shape), [a, b], 1],
      ['swiglu', (shape) => gatedActivationCall(deviceLimits(), 'silu', n, 'swiglu', shape), [a, b], 1],
      ['swigluBackward', (shape) => gatedActivationBackwardCall(deviceLimits(), 'silu', n, 'swiglu', shape), [a, b, a], 2],
      ['mul broadcast', (shape) => binaryBroadcastCall(deviceLimits(), 'mul', [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n, shape), [a, b], 1],
      ['add same-shape', (shape) => binarySameShapeCall(deviceLimits(), 'add', n, false, shape), [a, b], 1],
      ['scale', (shape) => scaleCall(deviceLimits(), n, 0.75, 'scale', shape), [a], 1],
      ['fill', (shape) => fillCall(deviceLimits(), n, 2.5, shape), [], 1],
      ['dropout', (shape) => dropoutCall(deviceLimits(), n, 0.25, { seed: 3, counter: 1, stream: 2 }, 'dropout', shape), [a], 1],
      ['embedding', (shape) => embeddingCall(deviceLimits(), n, n, 1, 'f32', { first: 0, rows: n }, shape), [ids, a], 1],
      ['columnSum', (shape) => columnSumCall(deviceLimits(), [{ blocks: 3, cols: n }], shape), [partials], 1],
      ['reduceSum', (shape) => reduceSumCall(deviceLimits(), [1, 1, 3, n], [1, 1, 1, n], 0.5, 'reduceSum', shape), [partials], 1],
      ['tokenLogprobsBackward', (shape) => tokenLogprobsBackwardCall(deviceLimits(), 1, n, 1, { first: 0, rows: 1 }, shape), [a, ids, b, a], 1],
    ];
    for (const [name, call, inputs, outputs] of cases) {
      const run = async (shape: ElementwiseShape) => {
        const outs = Array.from({ length: outputs }, () => Tensor.fromArray(new Float32Array(n).fill(NaN), [n]));
        launch(call(shape), inputs, outs);
        const values = await Promise.all(outs.map(download));
        for (const t of outs) t.dispose();
        return values;
      };
      const [many, one] = [await run(cpu), await run(gpu)];
      assert.ok(many.every((v) => v.every(Number.isFinite)), `${name} n=${n}: every element written`);
      assert.equal(many, one, `${name} n=${n}`);
    }
    a.dispose(); b.dispose(); ids.dispose(); partials.dispose();
  }
  assert.is(pool.liveBytes, base);
});

test('accumulate in quads (a count divisible by 4) and in words: acc + x rounded to f32, in both device shapes', async () => {
  await initGpu();
  for (const n of [4096, 4097]) {
    const x = randn(n, 60), acc = randn(n, 61);
    const expected = Float32Array.from(acc, (v, i) => Math.fround(v + x[i]));
    for (const shape of Object.values(ELEMENTWISE_SHAPES)) {
      const xt = upload(x, [n]), at = upload(acc, [n]);
      launch(accumulateCall(deviceLimits(), n, shape), [xt], [at]);
      assert.equal(await download(at), Float64Array.from(expected), `n=${n}, ${shape.threads} threads of up to ${shape.perThread}`);
      xt.dispose(); at.dispose();
    }
  }
});

test('equal shapes and scale take the index-free kernels, broadcasting the strided one; scale against float32 rounding', async () => {
  await initGpu();
  assert.is(binaryCall(deviceLimits(), 'add', [1, 2, 3, 8], [0, 24, 8, 1], [0, 24, 8, 1], 48, 48).kernel, binarySameShapeVec4Kernel);
  assert.is(binaryCall(deviceLimits(), 'add', [1, 2, 3, 8], [0, 24, 8, 1], [0, 0, 0, 1], 48, 8).kernel.name, 'binary');
  for (const n of COUNTS) {
    const xs = randn(n, 7 + n);
    const t = upload(xs, [n]);
    assert.is(scaleCall(deviceLimits(), n, 2).kernel, n % 4 === 0 ? scaleVec4Kernel : scaleKernel);
    const y = scale(t, -0.37);
    assertClose(await download(y), Float64Array.from(await download(t), (v) => F32(F32(-0.37) * v)), 0, `scale n=${n}`);
    t.dispose(); y.dispose();
  }
});

test.run();
