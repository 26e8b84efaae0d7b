import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tidy } from '../../engine/tensor.ts';
import { backward, tapeLength } from '../../engine/autodiff.ts';
import { narrow, permute, reshape } from '../../engine/ops/shape.ts';
import { add, mul, sub, div, sumLastDim, meanLastDim, scale } from '../../engine/ops/elementwise.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';

/** Float64 reference of a permutation of a row-major array. */
function permuteRef(x: Float64Array, shape: number[], perm: number[]): Float64Array {
  const outShape = perm.map((p) => shape[p]);
  const strides = shape.map((_, k) => shape.slice(k + 1).reduce((a, b) => a * b, 1));
  const out = new Float64Array(x.length);
  const idx = new Array(shape.length).fill(0);
  for (let i = 0; i < x.length; i++) {
    let r = i;
    for (let k = outShape.length - 1; k >= 0; k--) { idx[k] = r % outShape[k]; r = Math.floor(r / outShape[k]); }
    out[i] = x[idx.reduce((s, v, k) => s + v * strides[perm[k]], 0)];
  }
  return out;
}

test('permute forward and backward (ragged dims)', async () => {
  await initGpu();
  for (const [shape, perm] of [[[2, 7, 3, 5], [0, 2, 1, 3]], [[1, 33, 4], [2, 0, 1]], [[7, 13], [1, 0]], [[3, 5, 2, 4], [3, 1, 0, 2]]] as [number[], number[]][]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const xs = randn(n, n), seed = randn(n, n + 1);
    const x = upload(xs, shape, true);
    const y = permute(x, perm);
    assert.equal([...y.shape], perm.map((p) => shape[p]));
    assertClose(await download(y), permuteRef(xs, shape, perm), 0, `permute ${perm}`);
    tidy(() => backward(y, upload(seed, [...y.shape])));
    // d<perm(x), s>/dx = inverse-permuted s.
    const inverse = perm.map((_, k) => perm.indexOf(k));
    assertClose(await download(x.grad!), permuteRef(seed, [...y.shape], inverse), 0, 'permute backward');
  }
});

test('narrow forward and backward', async () => {
  const shape = [5, 3, 7];
  const xs = randn(105, 3);
  const x = upload(xs, shape, true);
  const y = narrow(x, 1, 1, 2);
  const ref: number[] = [];
  for (let a = 0; a < 5; a++) for (let b = 1; b < 3; b++) for (let c = 0; c < 7; c++) ref.push(xs[a * 21 + b * 7 + c]);
  assertClose(await download(y), ref, 0, 'narrow');
  const seed = randn(70, 4);
  tidy(() => backward(y, upload(seed, [5, 2, 7])));
  const g = new Float64Array(105);
  let i = 0;
  for (let a = 0; a < 5; a++) for (let b = 1; b < 3; b++) for (let c = 0; c < 7; c++) g[a * 21 + b * 7 + c] = seed[i++];
  assertClose(await download(x.grad!), g, 0, 'narrow backward');
});

test('reshape is a view on the tape', async () => {
  const x = upload([1, 2, 3, 4, 5, 6], [2, 3], true);
  const y = reshape(x, [3, 2]);
  tidy(() => backward(y, upload([1, 1, 2, 2, 3, 3], [3, 2])));
  assert.equal([...(await x.grad!.toArray())], [1, 1, 2, 2, 3, 3]);
});

test('broadcasting arithmetic: values and gradients against float64', async () => {
  const a = randn(2 * 3 * 5, 10), b = randn(3 * 1, 11).map((v) => v + 3), s = randn(30, 12);
  const ta = upload(a, [2, 3, 5], true), tb = upload(b, [3, 1], true);
  // f = sum(s * ((a + b) * b - a / b) * 0.5) ; check against float64.
  const out = scale(sub(mul(add(ta, tb), tb), div(ta, tb)), 0.5);
  const ref = new Float64Array(30), ga = new Float64Array(30), gb = new Float64Array(3);
  for (let i = 0; i < 30; i++) {
    const j = Math.floor(i / 5) % 3, x = a[i], y = b[j];
    ref[i] = 0.5 * ((x + y) * y - x / y);
    ga[i] = 0.5 * s[i] * (y - 1 / y);
    gb[j] += 0.5 * s[i] * (x + 2 * y + x / (y * y));
  }
  assertClose(await download(out), ref, 1e-6, 'value');
  tidy(() => backward(out, upload(s, [2, 3, 5])));
  assertClose(await download(ta.grad!), ga, 1e-5, 'da');
  assertClose(await download(tb.grad!), gb, 1e-5, 'db');
});

test('sum and mean over the last dim', async () => {
  const x = randn(7 * 130, 20);
  const t = upload(x, [7, 130], true);
  const m = meanLastDim(t);
  const s = sumLastDim(t, true);
  assert.equal([...s.shape], [7, 1]);
  const ref = Array.from({ length: 7 }, (_, r) => x.slice(r * 130, (r + 1) * 130).reduce((p, v) => p + v, 0));
  assertClose(await download(s), ref, 1e-6, 'sum');
  assertClose(await download(m), ref.map((v) => v / 130), 1e-6, 'mean');
  tidy(() => backward(m, upload([1, 2, 3, 4, 5, 6, 7], [7])));
  const g = await download(t.grad!);
  assertClose(g, Array.from({ length: 7 * 130 }, (_, i) => (Math.floor(i / 130) + 1) / 130), 1e-6, 'mean backward');
});

test('fan-out: gradients of a reused tensor add up; leaves accumulate across backward calls', async () => {
  const x = upload([1, 2, 3], [3], true);
  const y = mul(x, x); // x used twice by one op
  const z = add(y, x); // and once more
  tidy(() => backward(z, upload([1, 1, 1], [3])));
  assert.equal([...(await x.grad!.toArray())], [3, 5, 7]);
  tidy(() => backward(mul(x, upload([2, 2, 2], [3])), upload([1, 1, 1], [3])));
  assert.equal([...(await x.grad!.toArray())], [5, 7, 9]);
});

test('leaves fed the same gradient get separate .grad tensors; backward appends nothing to the tape', async () => {
  const a = upload([1, 2], [2], true), b = upload([3, 4], [2], true);
  for (let i = 0; i < 2; i++) tidy(() => backward(add(a, b), upload([1, 10], [2])));
  assert.equal([...(await a.grad!.toArray())], [2, 20]);
  assert.equal([...(await b.grad!.toArray())], [2, 20]);
  assert.is(tapeLength(), 0);
  const c = upload([5, 6], [2], true);
  tidy(() => backward(mul(c, a), upload([1, 1], [2]))); // mul's backward multiplies by a, which requires a gradient
  assert.is(tapeLength(), 0);
  assert.equal([...(await c.grad!.toArray())], [1, 2]);
});

test.run();
