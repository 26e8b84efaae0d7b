import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { softmax } from '../../engine/ops/softmax.ts';
import { pool } from '../../engine/pool.ts';
import { numelOf } from '../../engine/tensor.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randn, upload } from '../support/util.ts';

/** Float64 softmax along rows of length cols. */
function softmax64(x: ArrayLike<number>, cols: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let m = -Infinity;
    for (let j = 0; j < cols; j++) m = Math.max(m, x[r * cols + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) s += (y[r * cols + j] = Math.exp(x[r * cols + j] - m));
    for (let j = 0; j < cols; j++) y[r * cols + j] /= s;
  }
  return y;
}

/** Gradient of <softmax(x), dy> with respect to x: y · (dy - Σ dy·y) per row. */
function softmaxBackward64(y: Float64Array, dy: ArrayLike<number>, cols: number): Float64Array {
  const dx = new Float64Array(y.length);
  for (let r = 0; r < y.length / cols; r++) {
    let d = 0;
    for (let j = 0; j < cols; j++) d += dy[r * cols + j] * y[r * cols + j];
    for (let j = 0; j < cols; j++) dx[r * cols + j] = y[r * cols + j] * (dy[r * cols + j] - d);
  }
  return dx;
}

test('float64 reference gradient against finite differences', () => {
  const cols = 7;
  const x = randn(3 * cols, 1, 2), dy = randn(3 * cols, 2);
  assertClose(softmaxBackward64(softmax64(x, cols), dy, cols), finiteDiff((v) => dot(softmax64(v, cols), dy), x), 1e-7, 'softmax reference gradient');
});

async function checkSoftmax(shape: number[], seed: number, offset = 0): Promise<void> {
  const cols = shape[shape.length - 1];
  const n = numelOf(shape);
  // Scale 3 makes rows peaked; the offset checks that the row max is subtracted (exp(90) overflows f32).
  const x = randn(n, seed, 3).map((v) => v + offset);
  const dy = randn(n, seed + 1);
  const xt = upload(x, shape, true);
  const y = softmax(xt);
  const y64 = softmax64(x, cols);
  assertClose(await download(y), y64, 1e-5, `softmax ${shape} forward`);
  const seedT = upload(dy, shape);
  backward(y, seedT);
  assertClose(await download(xt.grad!), softmaxBackward64(y64, dy, cols), 1e-4, `softmax ${shape} backward`);
  for (const t of [xt.grad!, xt, y, seedT]) t.dispose();
}

test('softmax forward and backward against float64, rows of 1, 7, 33, 130', async () => {
  await initGpu();
  const live = pool.liveBytes;
  for (const [k, shape] of [[1, 1], [7, 7], [1, 33], [2, 7, 33], [130, 130], [33, 1], [7, 130]].entries()) await checkSoftmax(shape, 10 + k);
  await checkSoftmax([7, 33], 30, 90);
  assert.is(pool.liveBytes, live, 'every tensor returned to the pool');
});

test('softmax of one row of 50304 (a vocabulary) loops over the row', async () => {
  await initGpu();
  await checkSoftmax([1, 50304], 40);
});

test('masked entries (-inf) get probability 0 and gradient 0', async () => {
  await initGpu();
  const cols = 33;
  const x = randn(2 * cols, 50);
  for (let j = 0; j < cols; j++) if (j % 3 !== 0) x[j] = -Infinity; // row 0 keeps every third entry
  x[cols + cols - 1] = -Infinity; // row 1 masks its last entry only
  const xt = upload(x, [2, cols], true);
  const y = softmax(xt);
  const dy = randn(2 * cols, 51);
  const seedT = upload(dy, [2, cols]);
  const ours = await download(y);
  const y64 = softmax64(x, cols);
  assertClose(ours, y64, 1e-5, 'masked softmax forward');
  for (let j = 0; j < 2 * cols; j++) if (x[j] === -Infinity) assert.is(ours[j], 0, `y[${j}] of a masked entry`);
  backward(y, seedT);
  const grad = await download(xt.grad!);
  assertClose(grad, softmaxBackward64(y64, dy, cols), 1e-4, 'masked softmax backward');
  for (let j = 0; j < 2 * cols; j++) if (x[j] === -Infinity) assert.is(grad[j], 0, `dx[${j}] of a masked entry`);
  for (const t of [xt.grad!, xt, y, seedT]) t.dispose();
});

test.run();
