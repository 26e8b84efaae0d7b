import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { shapeString, tidy, Tensor } from '../../engine/tensor.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { stridedCopyCall, stridedCopyKernel, stridedCopyQuadsKernel } from '../../kernels/strided_copy.ts';
import { ELEMENTWISE_SHAPES } from '../../kernels/spec.ts';
import { ledger } from '../../engine/ledger.ts';
import { backward, tapeLength } from '../../engine/autodiff.ts';
import { cacheRowIds, gatherRows, narrow, permute, reshape, split } from '../../engine/ops/shape.ts';
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

test('strided copies: up to 64 consecutive elements an invocation (a CPU driver) give exactly a thread an element, every carry taken', async () => {
  await initGpu();
  // [3, 5, 7, 11] permuted so that every dim's counter wraps within one invocation's run; a slice offset; the scatter back.
  const dims = [3, 5, 7, 11], n = 3 * 5 * 7 * 11;
  const x = upload(randn(n, 77), [n]);
  const X = await download(x);
  for (const perm of [[3, 2, 1, 0], [1, 3, 0, 2], [0, 1, 2, 3]]) {
    const out = perm.map((p) => dims[p]);
    const contiguous = dims.map((_, k) => dims.slice(k + 1).reduce((a, b) => a * b, 1));
    const strides = perm.map((p) => contiguous[p]);
    const ref = permuteRef(X, dims, perm);
    for (const shape of [ELEMENTWISE_SHAPES.cpu, ELEMENTWISE_SHAPES.gpu, { threads: 8, perThread: 13, workgroups: 1 }]) {
      const what = `perm ${perm}, ${shape.threads} threads of up to ${shape.perThread}`;
      const y = Tensor.empty([n]);
      launch(stridedCopyCall(deviceLimits(), 'gather', out, strides, 0, 'permute', shape), [x], [y]);
      assert.equal(await download(y), ref, `${what}: gather`);
      const back = Tensor.zeros([n]);
      launch(stridedCopyCall(deviceLimits(), 'scatter', out, strides, 0, 'permute', shape), [y], [back]);
      assert.equal(await download(back), X, `${what}: scatter`);
      y.dispose(); back.dispose();
    }
  }
  // narrow(x, 3, 2, 5) of [3, 5, 7, 11] as [3, 5, 7, 5] at offset 2, gathered in runs of 13.
  const y = Tensor.empty([3 * 5 * 7 * 5]);
  launch(stridedCopyCall(deviceLimits(), 'gather', [3, 5, 7, 5], [385, 77, 11, 1], 2, 'narrow', { threads: 8, perThread: 13, workgroups: 1 }), [x], [y]);
  const got = await download(y);
  got.forEach((v, i) => { const r = Math.floor(i / 5), c = i % 5; assert.is(v, X[r * 11 + 2 + c], `narrow element ${i}`); });
  x.dispose(); y.dispose();
});

test('strided copies in quads (the innermost dim contiguous on both sides, runs on quad boundaries) move the same elements', async () => {
  await initGpu();
  // [3, 5, 2, 8]: permutes that keep the last dim (the attention's head permutes), every dim's counter wrapping within a run.
  const dims = [3, 5, 2, 8], n = 3 * 5 * 2 * 8;
  const x = upload(randn(n, 78), [n]);
  const X = await download(x);
  const contiguous = dims.map((_, k) => dims.slice(k + 1).reduce((a, b) => a * b, 1));
  for (const perm of [[0, 2, 1, 3], [2, 1, 0, 3], [0, 1, 2, 3]]) {
    const out = perm.map((p) => dims[p]), strides = perm.map((p) => contiguous[p]);
    const call = stridedCopyCall(deviceLimits(), 'gather', out, strides, 0, 'permute');
    assert.is(call.kernel, stridedCopyQuadsKernel, `perm ${perm} takes quads`);
    for (const shape of [ELEMENTWISE_SHAPES.cpu, ELEMENTWISE_SHAPES.gpu, { threads: 8, perThread: 5, workgroups: 1 }]) {
      const what = `perm ${perm}, ${shape.threads} threads of up to ${shape.perThread}`;
      const y = Tensor.empty([n]), back = Tensor.zeros([n]);
      launch(stridedCopyCall(deviceLimits(), 'gather', out, strides, 0, 'permute', shape), [x], [y]);
      assert.equal(await download(y), permuteRef(X, dims, perm), `${what}: gather`);
      launch(stridedCopyCall(deviceLimits(), 'scatter', out, strides, 0, 'permute', shape), [y], [back]);
      assert.equal(await download(back), X, `${what}: scatter`);
      y.dispose(); back.dispose();
    }
  }
  // A slice of the last dim at a quad's offset takes quads; at another offset, words.
  for (const start of [4, 2]) {
    const call = stridedCopyCall(deviceLimits(), 'gather', [3, 5, 2, 4], [80, 16, 8, 1], start, 'narrow', { threads: 8, perThread: 5, workgroups: 1 });
    assert.is(call.kernel, start % 4 === 0 ? stridedCopyQuadsKernel : stridedCopyKernel);
    const y = Tensor.empty([3 * 5 * 2 * 4]);
    launch(call, [x], [y]);
    (await download(y)).forEach((v, i) => assert.is(v, X[Math.floor(i / 4) * 8 + start + (i % 4)], `narrow at ${start}, element ${i}`));
    y.dispose();
  }
  x.dispose();
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

test('gatherRows: rows of cols in any order, repeated, in place, a dispatch a pair; negative ids and ids past x zeroed or left; bad tensors refused', async () => {
  await initGpu();
  const xs = randn(210, 9); // 30 rows of 7
  const x = upload(xs, [5, 3, 7, 2]);
  const before = Float32Array.from({ length: 6 * 7 }, (_, i) => 100 + i);
  const idList = [29, 0, -1, 4, 30, -1];
  const ids = Tensor.fromArray(idList, [6], 'i32');
  for (const zeroOthers of [true, false]) {
    const dst = upload(before, [2, 3, 7]), dst2 = upload(before, [6, 7]);
    ledger.reset();
    gatherRows([{ dst, x }, { dst: dst2, x }], ids, 7, 3, zeroOthers);
    assert.equal(ledger.byOp().filter((o) => o.dispatches > 0).map((o) => [o.key, o.dispatches]), [['gatherRows', 2]]);
    const want = idList.flatMap((id, i) => (id >= 0 && id < 30 ? [...xs.subarray(id * 7, id * 7 + 7)] : zeroOthers ? new Array(7).fill(0) : [...before.subarray(i * 7, i * 7 + 7)]));
    for (const d of [dst, dst2]) assertClose(await download(d), want, 0, `gatherRows zeroOthers ${zeroOthers}`);
    // Moved rows are read and written; a zeroing gather writes every row.
    assert.equal(ledger.byOp().find((o) => o.key === 'gatherRows')!.bytesWritten, 2 * 4 * 7 * (zeroOthers ? 6 : 3));
    for (const d of [dst, dst2]) d.dispose();
  }
  const dst = upload(before, [6, 7]);
  const three = Tensor.fromArray([0, 0, 0], [3], 'i32'), floats = upload(new Float32Array(6), [6]);
  assert.throws(() => gatherRows([{ dst, x }], three, 7, 0, true), /one row an id/);
  assert.throws(() => gatherRows([{ dst, x }], ids, 4, 0, true), /whole rows of cols/);
  assert.throws(() => gatherRows([{ dst, x }], ids, 7, 7, true), /moved 7 is not a count/);
  assert.throws(() => gatherRows([{ dst, x }], floats, 7, 0, true), /ids i32/);
  const leaf = upload(xs, [5, 3, 7, 2], true);
  assert.throws(() => gatherRows([{ dst, x: leaf }], ids, 7, 0, true), /without gradients/);
  for (const t of [x, dst, leaf, ids, three, floats]) t.dispose();
});

test('cacheRowIds: the ids of one part\'s rows moving right-aligned into a new cache, equal to the host\'s, for parts at the start, in the middle and alone; bad moves refused', async () => {
  await initGpu();
  // The host's ids: moved row r (new row at + r) takes source row sources[r]'s columns [pad, srcFilled), right-aligned at length.
  const hostIds = (m: { rows: number; heads: number; columns: number; length: number; srcColumns: number; srcFilled: number; at: number }, sources: number[], pads: number[]) => {
    const ids = new Int32Array(m.rows * m.heads * m.columns).fill(-1);
    sources.forEach((row, r) => {
      const width = m.srcFilled - pads[r];
      for (let h = 0; h < m.heads; h++)
        for (let j = 0; j < width; j++) ids[((m.at + r) * m.heads + h) * m.columns + m.length - width + j] = (row * m.heads + h) * m.srcColumns + pads[r] + j;
    });
    return ids;
  };
  const cases: [Parameters<typeof hostIds>[0], number[], number[]][] = [
    [{ rows: 3, heads: 2, columns: 9, length: 6, srcColumns: 8, srcFilled: 7, at: 0 }, [4, 1], [1, 3]], // the running rows, room 3
    [{ rows: 5, heads: 3, columns: 7, length: 7, srcColumns: 5, srcFilled: 5, at: 2 }, [0, 2, 1], [0, 2, 4]], // joiners after two rows, one column filled
    [{ rows: 1, heads: 1, columns: 4, length: 2, srcColumns: 6, srcFilled: 2, at: 0 }, [5], [0]],
    [{ rows: 4, heads: 2, columns: 8, length: 5, srcColumns: 6, srcFilled: 4, at: 0 }, [2, 0], [1, 0]], // rows that others' part fills follow
  ];
  for (const [m, sources, pads] of cases) {
    ledger.reset();
    const ids = cacheRowIds(m, sources, pads);
    assert.equal(Array.from(await ids.toArray()), Array.from(hostIds(m, sources, pads)), JSON.stringify(m));
    assert.equal(ledger.byOp().find((o) => o.key === 'cacheRowIds')!.bytesWritten, 4 * m.rows * m.heads * m.columns);
    ids.dispose();
  }
  const m = cases[0][0];
  assert.throws(() => cacheRowIds(m, [0, 1], [1]), /pads \[1\] for 2 rows/);
  assert.throws(() => cacheRowIds(m, [0], [8]), /within the source's 7 filled columns/);
  assert.throws(() => cacheRowIds(m, [], []), /one at least/);
  assert.throws(() => cacheRowIds({ ...m, at: 2 }, [0, 1], [0, 0]), /do not fit/);
  assert.throws(() => cacheRowIds({ ...m, length: 10 }, [0], [0]), /do not fit/);
});

test('a permute that moves only dims of 1, and a narrow of a whole dim, are views: no dispatch, the same values and gradients', async () => {
  await initGpu();
  const cases: [number[], (x: Tensor) => Tensor, number[]][] = [
    [[2, 5, 1, 3], (x) => permute(x, [0, 2, 1, 3]), [0, 2, 1, 3]], // [B, H, 1, D] -> [B, 1, H, D] (decoding)
    [[1, 4, 1, 6], (x) => permute(x, [2, 1, 0, 3]), [2, 1, 0, 3]],
    [[3, 1, 4], (x) => narrow(x, 1, 0, 1), [0, 1, 2]], // the last position of one
  ];
  for (const [shape, op, perm] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const xs = randn(n, n + 7), seed = randn(n, n + 8);
    const x = upload(xs, shape, true);
    ledger.reset();
    const y = op(x);
    assert.equal(ledger.byOp().reduce((d, o) => d + o.dispatches, 0), 0, `${shapeString(shape)}: no dispatch`);
    assertClose(await download(y), permuteRef(xs, shape, perm), 0, `${shapeString(shape)} forward`);
    tidy(() => backward(y, upload(seed, [...y.shape])));
    assertClose(await download(x.grad!), seed, 0, `${shapeString(shape)} backward`);
  }
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

test('split into permuted slices: values and gradient equal the permute + narrow composition; its backward is one scatter per slice', async () => {
  await initGpu();
  // A fused [B, T, H, 3D] projection into q, k, v [B, H, T, D], as GPT-NeoX's attention splits it; ragged sizes too.
  for (const [shape, sizes] of [[[2, 5, 3, 12], [4, 4, 4]], [[1, 7, 2, 9], [2, 3, 4]]] as [number[], number[]][]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const xs = randn(n, n + 7);
    const seeds = sizes.map((d, i) => randn(n / shape[3] * d, 100 + i));
    const perm = [0, 2, 1, 3];
    const gradOf = async (slices: (x: Tensor) => Tensor[], used: boolean[]) => {
      const x = upload(xs, shape, true);
      const parts = slices(x);
      const values = await Promise.all(parts.map(download));
      ledger.reset();
      tidy(() => {
        // Σ_i <slice_i, seed_i> over the used slices: each slice's gradient is its seed.
        const terms = parts.flatMap((p, i) => (used[i] ? [sumLastDim(reshape(mul(p, upload(seeds[i], [...p.shape])), [p.numel]))] : []));
        backward(terms.reduce((a, b) => add(a, b)));
      });
      return { values, grad: await download(x.grad!), backwardOps: ledger.byOp() };
    };
    const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    for (const used of [[true, true, true], [true, false, true]]) {
      const composed = await gradOf((x) => { const p = permute(x, perm); return sizes.map((d, i) => narrow(p, 3, starts[i], d)); }, used);
      const fused = await gradOf((x) => split(x, 3, sizes, perm), used);
      const what = `split ${shapeString(shape)} into ${sizes} (used ${used})`;
      fused.values.forEach((v, i) => assert.equal(v, composed.values[i], `${what}: slice ${i}`));
      assert.equal(fused.grad, composed.grad, `${what}: gradient`);
      const scatters = fused.backwardOps.find((r) => r.key === 'splitBackward')!;
      assert.is(scatters.dispatches, used.filter(Boolean).length, `${what}: one scatter per slice with a gradient`);
      // narrow's backward zero-fills a full dx per slice; split's fills one only when a slice got no gradient.
      const fills = (ops: typeof fused.backwardOps) => ops.find((r) => r.key === 'fill')?.dispatches ?? 0;
      assert.is(fills(composed.backwardOps) - fills(fused.backwardOps), used.filter(Boolean).length - (used.every(Boolean) ? 0 : 1), `${what}: fills`);
    }
  }
  assert.throws(() => split(upload([1, 2, 3, 4], [2, 2]), 1, [1, 2]), /sizes \[1,2\] along dim 1/);
});

test.run();
