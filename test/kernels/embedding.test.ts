import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { embedding } from '../../engine/ops/embedding.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, numelOf, tidy } from '../../engine/tensor.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { EMBEDDING_BACKWARD_THREADS, embeddingBackwardCall, embeddingCall, embeddingOrderCall } from '../../kernels/embedding.ts';
import { ELEMENTWISE_SHAPES } from '../../kernels/spec.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randInt, randn, upload } from '../support/util.ts';

/** Float64 gather: rows of weight [vocab, cols] by id; zero rows for ids outside [0, vocab). */
function embedding64(ids: ArrayLike<number>, weight: ArrayLike<number>, vocab: number, cols: number): Float64Array {
  const out = new Float64Array(ids.length * cols);
  for (let t = 0; t < ids.length; t++) {
    if (ids[t] < 0 || ids[t] >= vocab) continue;
    for (let c = 0; c < cols; c++) out[t * cols + c] = weight[ids[t] * cols + c];
  }
  return out;
}

/** Gradient of <embedding(ids, weight), dout> with respect to weight, accumulated in token order with `add`. */
function embeddingBackward64(ids: ArrayLike<number>, dout: ArrayLike<number>, vocab: number, cols: number, add = (a: number, b: number) => a + b): Float64Array {
  const dw = new Float64Array(vocab * cols);
  for (let t = 0; t < ids.length; t++) {
    if (ids[t] < 0 || ids[t] >= vocab) continue;
    for (let c = 0; c < cols; c++) dw[ids[t] * cols + c] = add(dw[ids[t] * cols + c], dout[t * cols + c]);
  }
  return dw;
}

const f32Add = (a: number, b: number) => Math.fround(a + b);

test('float64 reference gradient against finite differences', () => {
  const vocab = 5, cols = 3;
  const ids = [4, 0, 4, 2, 4, 9, -1];
  const w = randn(vocab * cols, 1), dout = randn(ids.length * cols, 2);
  assertClose(embeddingBackward64(ids, dout, vocab, cols), finiteDiff((v) => dot(embedding64(ids, v, vocab, cols), dout), w), 1e-8, 'embedding reference gradient');
});

interface Case { vocab: number; cols: number; idsShape: number[] }

async function checkEmbedding({ vocab, cols, idsShape }: Case, seed: number): Promise<void> {
  const tokens = numelOf(idsShape);
  // Ids drawn from a range smaller than the tokens repeat, and some of the vocabulary never occurs.
  const ids = randInt(tokens, vocab, seed);
  const w = randn(vocab * cols, seed + 1), dout = randn(tokens * cols, seed + 2);
  const idsT = Tensor.fromArray(ids, idsShape, 'i32');
  const wT = upload(w, [vocab, cols], true);
  const out = embedding(idsT, wT);
  const what = `embedding V=${vocab} C=${cols} ids ${idsShape}`;
  assert.equal(out.shape, [...idsShape, cols]);
  assert.equal(await download(out), embedding64(ids, w, vocab, cols), `${what} forward (a copy: exact)`);
  const seedT = upload(dout, [...idsShape, cols]);
  backward(out, seedT);
  const grad = await download(wT.grad!);
  assertClose(grad, embeddingBackward64(ids, dout, vocab, cols), 1e-5, `${what} backward`);
  // Summed in token order in f32: bit-identical to the same sum on the host.
  assert.equal(grad, embeddingBackward64(ids, dout, vocab, cols, f32Add), `${what} backward in token order`);
  for (const t of [wT.grad!, wT, idsT, out, seedT]) t.dispose();
}

test('embedding forward and backward against float64 at ragged shapes', async () => {
  await initGpu();
  const live = pool.liveBytes;
  const cases: Case[] = [
    { vocab: 1, cols: 7, idsShape: [5] },
    { vocab: 7, cols: 33, idsShape: [2, 33] },
    { vocab: 130, cols: 1, idsShape: [130] },
    { vocab: 33, cols: 130, idsShape: [7, 7] },
    { vocab: 130, cols: 7, idsShape: [1] },
    // More tokens than one workgroup sorts: the order kernel streams several tiles.
    { vocab: 33, cols: 7, idsShape: [3, 257] },
  ];
  for (const [k, c] of cases.entries()) await checkEmbedding(c, 10 * k);
  assert.is(pool.liveBytes, live, 'every tensor returned to the pool');
});

test('embedding backward is bit-identical over two runs with heavily repeated ids', async () => {
  await initGpu();
  const vocab = 3, cols = 33, tokens = 600;
  const ids = randInt(tokens, vocab, 7);
  const idsT = Tensor.fromArray(ids, [tokens], 'i32');
  const wT = upload(randn(vocab * cols, 8), [vocab, cols], true);
  const dout = randn(tokens * cols, 9);
  const grads: Uint32Array[] = [];
  for (let run = 0; run < 2; run++) {
    const out = embedding(idsT, wT);
    tidy(() => backward(out, upload(dout, [tokens, cols])));
    grads.push(new Uint32Array((await wT.grad!.toArray()).buffer.slice(0)));
    wT.grad!.dispose(); wT.grad = null; out.dispose();
  }
  assert.equal(grads[0], grads[1]);
  for (const t of [wT, idsT]) t.dispose();
});

test('the gather in both device shapes and a ragged one: a thread\'s (token, column) carried by its stride gives every element, columns fewer and more than the threads', async () => {
  await initGpu();
  const vocab = 11, tokens = 37;
  const ids = randInt(tokens, vocab, 50);
  const idsT = Tensor.fromArray(ids, [tokens], 'i32');
  for (const cols of [1, 7, 64, 130, 300]) {
    const table = randn(vocab * cols, 51 + cols);
    const weight = upload(table, [vocab, cols]);
    const expected = Array.from(ids).flatMap((id) => [...table.subarray(id * cols, (id + 1) * cols)].map((v) => Math.fround(v)));
    for (const shape of [ELEMENTWISE_SHAPES.cpu, ELEMENTWISE_SHAPES.gpu, { threads: 8, perThread: 13, workgroups: 1 }]) {
      const out = Tensor.empty([tokens, cols]);
      launch(embeddingCall(deviceLimits(), tokens, vocab, cols, 'f32', { first: 0, rows: vocab }, shape), [idsT, weight], [out]);
      assert.equal([...await download(out)], expected, `cols ${cols}, ${shape.threads} threads of up to ${shape.perThread}`);
      out.dispose();
    }
    weight.dispose();
  }
  idsT.dispose();
});

test('embedding backward: every device kind\'s threads a run give the token-order sums, columns past the threads included', async () => {
  await initGpu();
  const vocab = 9, cols = 130, tokens = 70; // 130 columns: 5 blocks for 32 threads, 1 for 256
  const ids = randInt(tokens, vocab, 30), dout = randn(tokens * cols, 31);
  const idsT = Tensor.fromArray(ids, [tokens], 'i32'), doutT = upload(dout, [tokens, cols]);
  const order = Tensor.empty([tokens], 'u32');
  launch(embeddingOrderCall(deviceLimits(), tokens), [idsT], [order]);
  for (const threads of Object.values(EMBEDDING_BACKWARD_THREADS)) {
    const dweight = Tensor.zeros([vocab, cols]);
    launch(embeddingBackwardCall(deviceLimits(), tokens, vocab, cols, { first: 0, rows: vocab }, threads), [idsT, order, doutT], [dweight]);
    assert.equal(await download(dweight), embeddingBackward64(ids, dout, vocab, cols, f32Add), `${threads} threads a run`);
    dweight.dispose();
  }
  for (const t of [idsT, doutT, order]) t.dispose();
});

test('ids outside [0, vocab) give zero rows and no gradient, without touching memory out of bounds', async () => {
  await initGpu();
  const vocab = 7, cols = 5;
  const ids = [3, -1, 7, 3, 2 ** 31 - 1, -(2 ** 31), 1000, 0];
  const w = randn(vocab * cols, 20), dout = randn(ids.length * cols, 21);
  const idsT = Tensor.fromArray(ids, [ids.length], 'i32');
  const wT = upload(w, [vocab, cols], true);
  const out = embedding(idsT, wT);
  const seedT = upload(dout, [ids.length, cols]);
  const forward = await download(out);
  assert.equal(forward, embedding64(ids, w, vocab, cols));
  backward(out, seedT);
  assert.equal(await download(wT.grad!), embeddingBackward64(ids, dout, vocab, cols, f32Add));
  for (const t of [wT.grad!, wT, idsT, out, seedT]) t.dispose();
});

test('a 16-bit table (f16, bf16) gathers its stored values exactly into f32; requiresGrad on it is refused', async () => {
  await initGpu();
  const live = pool.liveBytes;
  // Odd column counts start rows in the middle of a word, so both half-words are read.
  const cases: Case[] = [{ vocab: 7, cols: 33, idsShape: [2, 33] }, { vocab: 33, cols: 7, idsShape: [3, 5] }, { vocab: 1, cols: 1, idsShape: [3] }];
  for (const dtype of ['f16', 'bf16'] as const)
    for (const [k, { vocab, cols, idsShape }] of cases.entries()) {
      const ids = randInt(numelOf(idsShape), vocab, 40 + k);
      ids[0] = vocab; // out of range: a zero row
      const idsT = Tensor.fromArray(ids, idsShape, 'i32');
      const wT = Tensor.fromArray(randn(vocab * cols, 50 + k), [vocab, cols], dtype);
      const stored = await download(wT); // the rounded values, widened on the host
      const out = embedding(idsT, wT);
      assert.is(out.dtype, 'f32');
      assert.equal(await download(out), embedding64(ids, stored, vocab, cols), `${dtype} V=${vocab} C=${cols}`);
      wT.requiresGrad = true;
      assert.throws(() => embedding(idsT, wT), new RegExp(`\\[${vocab}, ${cols}\\] is ${dtype} with requiresGrad set; 16-bit tensors are frozen`));
      for (const t of [idsT, wT, out]) t.dispose();
    }
  assert.is(pool.liveBytes, live);
});

test('embedding rejects non-i32 ids and a weight that is not [V, C]', async () => {
  await initGpu();
  const f = upload([0, 1], [2]), w = upload([1, 2, 3, 4], [4]);
  const ids = Tensor.fromArray([0, 1], [2], 'i32');
  assert.throws(() => embedding(f, upload([1, 2], [1, 2])), /ids must be i32/);
  assert.throws(() => embedding(ids, w), /weight must be f32, f16 or bf16 \[vocab, cols\]/);
  for (const t of [f, w, ids]) t.dispose();
});

test.run();
