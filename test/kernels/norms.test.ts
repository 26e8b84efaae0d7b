// LayerNorm and RMSNorm: forward and gradients against float64 references at ragged shapes, the
// references against finite differences, bit-identical weight gradients across runs, and the
// PyTorch fixture.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward, noGrad, tapeLength, zeroGrad } from '../../engine/autodiff.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { add, mul } from '../../engine/ops/elementwise.ts';
import { layerNorm, layerNormPair, rmsNorm } from '../../engine/ops/norms.ts';
import { pool } from '../../engine/pool.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { layerNormBackwardCall, normRowBlocks } from '../../kernels/layernorm_backward.ts';
import { layerNormForwardCall } from '../../kernels/layernorm_forward.ts';
import { rmsNormBackwardCall } from '../../kernels/rmsnorm_backward.ts';
import { rmsNormForwardCall } from '../../kernels/rmsnorm_forward.ts';
import { ROW_REDUCTION_SHAPES, type RowReductionShape } from '../../kernels/spec.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randn, upload } from '../support/util.ts';
import { fixture } from '../support/paths.ts';

const EPS = 1e-5;
const ROWS = [1, 7, 33, 130];
const COLS = [1, 7, 33, 130, 768];

/** y of a norm over rows of x [rows, cols] and the gradients of <y, dy> (dbias for layernorm only). */
interface NormResult { y: Float64Array; dx: Float64Array; dweight: Float64Array; dbias?: Float64Array }

/** float64 layernorm: y = (x - mean) * rstd * w + b with the biased variance. */
function layerNormRef(x: Float64Array, w: Float64Array, b: Float64Array, dy: Float64Array, cols: number, eps: number): NormResult {
  const rows = x.length / cols;
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dweight = new Float64Array(cols), dbias = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const mean = row.reduce((s, v) => s + v, 0) / cols;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / cols;
    const rstd = 1 / Math.sqrt(variance + eps);
    const xhat = row.map((v) => (v - mean) * rstd);
    // forward was y = xhat * w + b, so with g = dy * w: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    let meanG = 0, meanGXhat = 0;
    for (let j = 0; j < cols; j++) { const g = dy[r * cols + j] * w[j]; meanG += g / cols; meanGXhat += g * xhat[j] / cols; }
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      y[i] = xhat[j] * w[j] + b[j];
      dx[i] = rstd * (dy[i] * w[j] - meanG - xhat[j] * meanGXhat);
      dweight[j] += dy[i] * xhat[j];
      dbias[j] += dy[i];
    }
  }
  return { y, dx, dweight, dbias };
}

/** float64 RMSNorm: y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps). */
function rmsNormRef(x: Float64Array, w: Float64Array, dy: Float64Array, cols: number, eps: number): NormResult {
  const rows = x.length / cols;
  const y = new Float64Array(x.length), dx = new Float64Array(x.length), dweight = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const rstd = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / cols + eps);
    // forward was y = xhat * w with xhat = x * rstd, so with g = dy * w: dx = rstd * (g - xhat * mean(g * xhat)).
    let meanGXhat = 0;
    for (let j = 0; j < cols; j++) meanGXhat += dy[r * cols + j] * w[j] * row[j] * rstd / cols;
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      const xhat = row[j] * rstd;
      y[i] = xhat * w[j];
      dx[i] = rstd * (dy[i] * w[j] - xhat * meanGXhat);
      dweight[j] += dy[i] * xhat;
    }
  }
  return { y, dx, dweight };
}

/** Inputs of one norm check, rounded to f32 so that the reference sees exactly what the GPU sees. */
function inputs(rows: number, cols: number, seed: number, offset = 0) {
  return {
    x: randn(rows * cols, seed).map((v) => Math.fround(v + offset)),
    w: randn(cols, seed + 1),
    b: randn(cols, seed + 2),
    dy: randn(rows * cols, seed + 3),
  };
}

test('float64 references: gradients match finite differences', () => {
  // A large eps, so that a reference that dropped it from the backward would fail.
  const cols = 5, eps = 0.1;
  const { x, w, b, dy } = inputs(3, cols, 11);
  const ln = layerNormRef(x, w, b, dy, cols, eps);
  assertClose(ln.dx, finiteDiff((v) => dot(layerNormRef(v, w, b, dy, cols, eps).y, dy), x), 1e-7, 'layernorm dx');
  assertClose(ln.dweight, finiteDiff((v) => dot(layerNormRef(x, v, b, dy, cols, eps).y, dy), w), 1e-7, 'layernorm dweight');
  assertClose(ln.dbias!, finiteDiff((v) => dot(layerNormRef(x, w, v, dy, cols, eps).y, dy), b), 1e-7, 'layernorm dbias');
  const rms = rmsNormRef(x, w, dy, cols, eps);
  assertClose(rms.dx, finiteDiff((v) => dot(rmsNormRef(v, w, dy, cols, eps).y, dy), x), 1e-7, 'rmsnorm dx');
  assertClose(rms.dweight, finiteDiff((v) => dot(rmsNormRef(x, v, dy, cols, eps).y, dy), w), 1e-7, 'rmsnorm dweight');
});

/** Runs a norm and its backward on the GPU with seed dy; returns y and the gradients, disposing everything. */
async function runNorm(kind: 'layerNorm' | 'rmsNorm', shape: number[], data: ReturnType<typeof inputs>, eps: number): Promise<NormResult> {
  const cols = shape[shape.length - 1];
  const x = upload(data.x, shape, true), w = upload(data.w, [cols], true), b = upload(data.b, [cols], true);
  const y = kind === 'layerNorm' ? layerNorm(x, w, b, eps) : rmsNorm(x, w, eps);
  const seed = upload(data.dy, shape);
  backward(y, seed);
  const result: NormResult = { y: await download(y), dx: await download(x.grad!), dweight: await download(w.grad!) };
  if (kind === 'layerNorm') result.dbias = await download(b.grad!);
  else assert.is(b.grad, null, 'rmsNorm has no bias');
  zeroGrad([x, w, b]);
  for (const t of [x, w, b, y, seed]) t.dispose();
  return result;
}

function assertNorm(ours: NormResult, ref: NormResult, what: string): void {
  assertClose(ours.y, ref.y, 1e-5, `${what}: y`);
  assertClose(ours.dx, ref.dx, 1e-4, `${what}: dx`);
  assertClose(ours.dweight, ref.dweight, 1e-4, `${what}: dweight`);
  if (ref.dbias) assertClose(ours.dbias!, ref.dbias, 1e-4, `${what}: dbias`);
}

test('layerNorm and rmsNorm forward and gradients vs float64, ragged shapes', async () => {
  await initGpu();
  const base = pool.liveBytes;
  let seed = 100;
  for (const rows of ROWS) {
    for (const cols of COLS) {
      const data = inputs(rows, cols, (seed += 10));
      assertNorm(await runNorm('layerNorm', [rows, cols], data, EPS), layerNormRef(data.x, data.w, data.b, data.dy, cols, EPS), `layerNorm [${rows}, ${cols}]`);
      assertNorm(await runNorm('rmsNorm', [rows, cols], data, EPS), rmsNormRef(data.x, data.w, data.dy, cols, EPS), `rmsNorm [${rows}, ${cols}]`);
    }
  }
  // Rows are the product of the leading dims; a long ragged row takes the largest workgroup.
  for (const shape of [[2, 65, 33], [3, 8200]]) {
    const cols = shape[shape.length - 1];
    const data = inputs(shape.reduce((a, b) => a * b) / cols, cols, (seed += 10));
    assertNorm(await runNorm('layerNorm', shape, data, EPS), layerNormRef(data.x, data.w, data.b, data.dy, cols, EPS), `layerNorm [${shape}]`);
    assertNorm(await runNorm('rmsNorm', shape, data, EPS), rmsNormRef(data.x, data.w, data.dy, cols, EPS), `rmsNorm [${shape}]`);
  }
  assert.is(pool.liveBytes, base, 'the saved statistics and scratch partials are freed');
});

test('layerNormPair equals two layerNorms of x: outputs bit for bit, gradients to 1e-6, one forward dispatch, one for the four weight gradients', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const [rows, cols] = [7, 48];
  const data = { x: randn(rows * cols, 31, 3), w1: randn(cols, 32), b1: randn(cols, 33), w2: randn(cols, 34), b2: randn(cols, 35), s1: randn(rows * cols, 36), s2: randn(rows * cols, 37) };
  const results: { y: Float64Array[]; grads: Float64Array[]; dispatches: number; backward: Record<string, number> }[] = [];
  for (const paired of [true, false]) {
    const x = upload(data.x, [rows, cols], true);
    const ps = [data.w1, data.b1, data.w2, data.b2].map((d) => upload(d, [cols], true));
    const [w1, b1, w2, b2] = ps as [Tensor, Tensor, Tensor, Tensor];
    ledger.reset();
    const ys = paired ? layerNormPair(x, [w1, b1], [w2, b2], 1e-5) : [layerNorm(x, w1, b1, 1e-5), layerNorm(x, w2, b2, 1e-5)];
    const dispatches = ledger.byOp().reduce((n, o) => n + o.dispatches, 0);
    const y = await Promise.all(ys.map(download));
    // d/d(.) of Σ y1·s1 + y2·s2: one backward through both outputs.
    const seeds = [upload(data.s1, [rows, cols]), upload(data.s2, [rows, cols]), upload(new Float64Array(rows * cols).fill(1), [rows, cols])];
    const loss = tidy(() => add(mul(ys[0]!, seeds[0]!), mul(ys[1]!, seeds[1]!)));
    ledger.reset();
    backward(loss, seeds[2]);
    const backwardOps = Object.fromEntries(ledger.byOp().filter((o) => o.dispatches > 0 && /^(layerNormBackward|columnSum|add|accumulate)$/.test(o.key)).map((o) => [o.key, o.dispatches]));
    results.push({ y, grads: await Promise.all([x, ...ps].map((t) => download(t.grad!))), dispatches, backward: backwardOps });
    for (const t of [x, ...ps, ...ys, ...seeds, loss]) { t.grad?.dispose(); t.dispose(); }
  }
  const [pair, two] = results as [typeof results[0], typeof results[0]];
  assert.equal(pair.y, two.y, 'outputs');
  for (const [i, name] of ['dx', 'dw1', 'db1', 'dw2', 'db2'].entries()) assertClose(pair.grads[i]!, two.grads[i]!, 1e-6, name);
  assert.is(pair.dispatches, 1);
  assert.is(two.dispatches, 2);
  // The pair: two norm backwards, their dx added, and one dispatch for the four weight gradients; two layerNorms: a
  // column-sum dispatch each, and x's second gradient accumulated onto its first.
  assert.equal(pair.backward, { layerNormBackward: 2, columnSum: 1, add: 1 });
  assert.equal(two.backward, { layerNormBackward: 2, columnSum: 2, accumulate: 1 });
  assert.is(pool.liveBytes, base);
});

test('rows side by side in a workgroup (kernels/spec.ts rowGroup) get the bits each gets alone: y and dx', async () => {
  await initGpu();
  const bits = (v: Float64Array) => [...new Uint32Array(Float32Array.from(v).buffer)];
  // 64 columns: 2 threads a row, 16 rows a workgroup; 7: 1 thread, 32 rows; 130: 8 threads, 4 rows. 37 rows leave the
  // last workgroup, and the backward's last block, partly empty.
  for (const cols of [64, 7, 130]) {
    const rows = 37;
    const data = inputs(rows, cols, 500 + cols);
    for (const kind of ['layerNorm', 'rmsNorm'] as const) {
      const together = await runNorm(kind, [rows, cols], data, EPS);
      for (let r = 0; r < rows; r++) {
        const row = (v: Float64Array) => v.slice(r * cols, (r + 1) * cols);
        const alone = await runNorm(kind, [1, cols], { x: row(data.x), w: data.w, b: data.b, dy: row(data.dy) }, EPS);
        assert.equal(bits(row(together.y)), bits(alone.y), `${kind} [${rows}, ${cols}] row ${r}: y`);
        assert.equal(bits(row(together.dx)), bits(alone.dx), `${kind} [${rows}, ${cols}] row ${r}: dx`);
      }
    }
  }
});

/** A norm's forward and backward kernels in a given row-reduction shape (the ops take the device's); dweight and dbias add the blocks' partials in float64. */
async function runNormKernels(kind: 'layerNorm' | 'rmsNorm', shape: RowReductionShape, rows: number, cols: number, data: ReturnType<typeof inputs>): Promise<NormResult> {
  const limits = deviceLimits();
  const { blocks } = normRowBlocks(rows);
  const x = upload(data.x, [rows, cols]), w = upload(data.w, [cols]), b = upload(data.b, [cols]), dy = upload(data.dy, [rows, cols]);
  const [y, dx] = [Tensor.empty([rows, cols]), Tensor.empty([rows, cols])];
  const [mean, rstd] = [Tensor.empty([rows]), Tensor.empty([rows])];
  const partials = [Tensor.empty([blocks, cols]), Tensor.empty([blocks, cols])];
  if (kind === 'layerNorm') {
    launch(layerNormForwardCall(limits, shape, rows, cols, EPS), [x, w, b, null, null], [y, null, mean, rstd]);
    launch(layerNormBackwardCall(limits, shape, rows, cols), [x, w, dy, mean, rstd], [dx, ...partials]);
  } else {
    launch(rmsNormForwardCall(limits, shape, rows, cols, EPS), [x, w], [y, rstd]);
    launch(rmsNormBackwardCall(limits, shape, rows, cols), [x, w, dy, rstd], [dx, partials[0]]);
  }
  const columnSums = async (t: Tensor) => {
    const p = await download(t), sums = new Float64Array(cols);
    for (let i = 0; i < p.length; i++) sums[i % cols] += p[i];
    return sums;
  };
  const result: NormResult = { y: await download(y), dx: await download(dx), dweight: await columnSums(partials[0]) };
  if (kind === 'layerNorm') result.dbias = await columnSums(partials[1]);
  for (const t of [x, w, b, dy, y, dx, mean, rstd, ...partials]) t.dispose();
  return result;
}

test('both device shapes of the row reductions (a thread a row on a CPU driver; threads sharing a row, rows side by side, on a GPU): float64 references, and each row the bits it gets alone', async () => {
  await initGpu();
  const bits = (v: Float64Array) => [...new Uint32Array(Float32Array.from(v).buffer)];
  for (const [name, shape] of Object.entries(ROW_REDUCTION_SHAPES)) {
    // On a GPU 7 columns take a thread a row, 64 two, 130 eight and 768 thirty-two; 37 rows leave the last workgroup,
    // and the backward's last block, partly empty.
    for (const cols of [7, 64, 130, 768]) {
      const rows = 37;
      const data = inputs(rows, cols, 700 + cols);
      for (const kind of ['layerNorm', 'rmsNorm'] as const) {
        const what = `${kind} ${name} shape [${rows}, ${cols}]`;
        const together = await runNormKernels(kind, shape, rows, cols, data);
        const ref = kind === 'layerNorm' ? layerNormRef(data.x, data.w, data.b, data.dy, cols, EPS) : rmsNormRef(data.x, data.w, data.dy, cols, EPS);
        assertNorm(together, ref, what);
        for (const r of [0, 17, 36]) {
          const row = (v: Float64Array) => v.slice(r * cols, (r + 1) * cols);
          const alone = await runNormKernels(kind, shape, 1, cols, { x: row(data.x), w: data.w, b: data.b, dy: row(data.dy) });
          assert.equal(bits(row(together.y)), bits(alone.y), `${what} row ${r}: y`);
          assert.equal(bits(row(together.dx)), bits(alone.dx), `${what} row ${r}: dx`);
        }
      }
    }
  }
});

test('layerNorm keeps its precision on rows with a large common offset', async () => {
  await initGpu();
  // x = 1000 + N(0, 1): E[x^2] - E[x]^2 in f32 loses the variance here. Gradients recompute xhat from
  // the saved f32 mean, off by up to half an ulp of 1000 (3e-5 of the unit std), hence 1e-4 still.
  const data = inputs(7, 768, 5, 1000);
  assertNorm(await runNorm('layerNorm', [7, 768], data, EPS), layerNormRef(data.x, data.w, data.b, data.dy, 768, EPS), 'layerNorm offset 1000');
});

test('weight gradients are bit-identical across runs; the ledger names the kernels', async () => {
  await initGpu();
  const data = inputs(130, 768, 3);
  ledger.reset();
  for (const kind of ['layerNorm', 'rmsNorm'] as const) {
    const [first, second] = [await runNorm(kind, [130, 768], data, EPS), await runNorm(kind, [130, 768], data, EPS)];
    for (const key of ['y', 'dx', 'dweight', 'dbias'] as const) {
      if (!first[key]) continue;
      const bits = (v: Float64Array) => new Uint32Array(Float32Array.from(v).buffer);
      assert.equal(bits(second[key]!), bits(first[key]!), `${kind} ${key} differs between runs`);
    }
  }
  const ops = ledger.byOp().map((r) => r.key);
  for (const op of ['layerNormForward', 'layerNormBackward', 'rmsNormForward', 'rmsNormBackward', 'columnSum']) assert.ok(ops.includes(op), `ledger has ${op}`);
});

test('without gradients nothing is recorded and the statistics are freed', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const x = upload(randn(7 * 33, 1), [7, 33], true), w = upload(randn(33, 2), [33], true), b = upload(randn(33, 3), [33], true);
  const outputs: Tensor[] = noGrad(() => [layerNorm(x, w, b, EPS), rmsNorm(x, w, EPS)]);
  assert.is(tapeLength(), 0);
  for (const t of [...outputs, x, w, b]) t.dispose();
  assert.is(pool.liveBytes, base);
});

/** test/fixtures/hf/ops, where the project keeps its copy, else the shared folder it came from. */
function fixturePath(): string {
  return fixture('hf/ops/expected.safetensors');
}

test('PyTorch fixture: layernorm and RMSNorm forward and gradients', async () => {
  await initGpu();
  const file = SafetensorsFile.open(fixturePath());
  const read = (name: string) => Float64Array.from(file.read(name));
  const shape = file.info('x').shape;
  const data = { x: read('x'), w: read('weight'), b: read('bias'), dy: read('dy') };
  const eps = 1e-5; // expected.json
  assertNorm(await runNorm('layerNorm', shape, data, eps),
    { y: read('layernorm.y'), dx: read('layernorm.dx'), dweight: read('layernorm.dweight'), dbias: read('layernorm.dbias') }, 'fixture layernorm');
  assertNorm(await runNorm('rmsNorm', shape, data, eps),
    { y: read('rmsnorm.y'), dx: read('rmsnorm.dx'), dweight: read('rmsnorm.dweight') }, 'fixture rmsnorm');
  file.close();
});

test.run();
