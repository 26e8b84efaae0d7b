import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward, noGrad } from '../../engine/autodiff.ts';
import { inverseFrequencies, qkvRotary, rotary, rotaryHeads, type QkvProjections, type RotaryOptions } from '../../engine/ops/rotary.ts';
import { add, mul, sumLastDim } from '../../engine/ops/elementwise.ts';
import { ledger } from '../../engine/ledger.ts';
import { permute, reshape, split, writeSlice } from '../../engine/ops/shape.ts';
import { pool } from '../../engine/pool.ts';
import { numelOf, Tensor, tidy } from '../../engine/tensor.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { qkvRotaryCall, type QkvRotaryLayout } from '../../kernels/qkv_rotary.ts';
import { ELEMENTWISE_SHAPES, type ElementwiseShape } from '../../kernels/spec.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randn, upload } from '../support/util.ts';

type Shape = [number, number, number, number];

/**
 * Float64 rotate-half rotation of x [B, H, T, D] by `sign` · angle, with angle = f32(pos · inv_freq) as transformers
 * forms it in float32; sin and cos of that angle in float64. Batch row b's positions start at column leftPadding[b].
 */
function rotary64(x: ArrayLike<number>, [b, h, t, d]: Shape, { rotaryDims, base, positionOffset = 0 }: RotaryOptions, sign = 1, leftPadding: number[] = []): Float64Array {
  const inv = inverseFrequencies(rotaryDims, base);
  const half = rotaryDims / 2;
  const out = Float64Array.from(x);
  for (let row = 0; row < b * h * t; row++) {
    const pos = Math.max((row % t) + positionOffset - (leftPadding[Math.floor(row / (h * t))] ?? 0), 0);
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * inv[i]);
      const c = Math.cos(angle), s = sign * Math.sin(angle);
      const x1 = x[row * d + i], x2 = x[row * d + i + half];
      out[row * d + i] = x1 * c - x2 * s;
      out[row * d + i + half] = x2 * c + x1 * s;
    }
  }
  return out;
}

test('inverseFrequencies: transformers\' float32 inv_freq at exactly representable powers', () => {
  // base^(2i/rd) with rd = 8, base = 10000 is 1, 10, 100, 1000: inv_freq is the f32 of 1, 0.1, 0.01, 0.001.
  assert.equal([...inverseFrequencies(8, 10000)], [1, 0.1, 0.01, 0.001].map(Math.fround));
  assert.equal([...inverseFrequencies(4, 1e6)], [1, 0.001].map(Math.fround));
  assert.equal([...inverseFrequencies(2, 10000)], [1]);
});

test('float64 reference gradient against finite differences', () => {
  const shape: Shape = [1, 2, 3, 6];
  const opts = { rotaryDims: 4, base: 10000, positionOffset: 5 };
  const x = randn(numelOf(shape), 1), dy = randn(numelOf(shape), 2);
  assertClose(rotary64(dy, shape, opts, -1), finiteDiff((v) => dot(rotary64(v, shape, opts), dy), x), 1e-8, 'rotary reference gradient');
});

async function checkRotary(shape: Shape, opts: RotaryOptions, seed: number): Promise<void> {
  const n = numelOf(shape);
  const x = randn(n, seed), dy = randn(n, seed + 1);
  const xt = upload(x, shape, true);
  const y = rotary(xt, opts);
  const what = `rotary ${shape} ${JSON.stringify(opts)}`;
  const ours = await download(y);
  assertClose(ours, rotary64(x, shape, opts), 1e-6, `${what} forward`);
  // Dims beyond rotaryDims pass through unchanged.
  for (let k = 0; k < n; k++) if (k % shape[3] >= opts.rotaryDims) assert.is(ours[k], x[k], `${what}: passed-through dim`);
  tidy(() => backward(y, upload(dy, shape)));
  assertClose(await download(xt.grad!), rotary64(dy, shape, opts, -1), 1e-5, `${what} backward`);
  for (const t of [xt.grad!, xt, y]) t.dispose();
}

test('rotary forward and backward against float64 at ragged shapes', async () => {
  await initGpu();
  const cases: [Shape, RotaryOptions][] = [
    [[1, 1, 1, 2], { rotaryDims: 2, base: 10000 }],
    [[1, 2, 7, 16], { rotaryDims: 4, base: 10000 }], // GPT-NeoX: rotary_pct 0.25
    [[2, 1, 33, 8], { rotaryDims: 8, base: 1e6 }], // Mistral: every dim
    [[1, 7, 1, 130], { rotaryDims: 130, base: 10000, positionOffset: 33 }],
    [[1, 1, 130, 7], { rotaryDims: 6, base: 10000 }], // odd D
  ];
  for (const [k, [shape, opts]] of cases.entries()) await checkRotary(shape, opts, 20 + k);
  // A second pass finds every inv_freq table cached: nothing else may stay behind.
  const live = pool.liveBytes;
  for (const [k, [shape, opts]] of cases.entries()) await checkRotary(shape, opts, 30 + k);
  assert.is(pool.liveBytes, live);
});

test('rotary at far positions: the range reduction keeps sin and cos exact', async () => {
  await initGpu();
  await checkRotary([1, 2, 7, 8], { rotaryDims: 8, base: 10000, positionOffset: 100000 }, 40);
  await checkRotary([1, 1, 33, 4], { rotaryDims: 4, base: 500000, positionOffset: 65521 }, 41);
});

test('rotary at offset p equals rows p.. of the rotation from position 0', async () => {
  await initGpu();
  const [b, h, t, d] = [2, 3, 33, 16], p = 13;
  const opts = { rotaryDims: 4, base: 10000 };
  const x = randn(b * h * t * d, 50);
  const tail = new Float64Array(b * h * (t - p) * d);
  for (let r = 0; r < b * h; r++) tail.set(x.subarray((r * t + p) * d, (r + 1) * t * d), r * (t - p) * d);
  const xt = upload(x, [b, h, t, d]), tailT = upload(tail, [b, h, t - p, d]);
  const full = rotary(xt, opts);
  const offset = rotary(tailT, { ...opts, positionOffset: p });
  const fullOut = await download(full), offsetOut = await download(offset);
  for (let r = 0; r < b * h; r++)
    assert.equal(offsetOut.subarray(r * (t - p) * d, (r + 1) * (t - p) * d), fullOut.subarray((r * t + p) * d, (r + 1) * t * d), `head row ${r}`);
  for (const tensor of [xt, tailT, full, offset]) tensor.dispose();
});

test('rotary with left padding: each batch row counts positions from its first real column, padding at 0', async () => {
  await initGpu();
  const shape: Shape = [3, 2, 7, 8];
  const padding = [0, 3, 6];
  const n = numelOf(shape);
  for (const positionOffset of [0, 4]) {
    const x = randn(n, 70 + positionOffset), dy = randn(n, 71 + positionOffset);
    const xt = upload(x, shape, true), pad = Tensor.fromArray(padding, [3], 'i32');
    const opts = { rotaryDims: 6, base: 10000, positionOffset };
    const y = rotary(xt, { ...opts, leftPadding: pad });
    const what = `rotary ${shape} leftPadding ${padding} positionOffset ${positionOffset}`;
    const ours = await download(y);
    assertClose(ours, rotary64(x, shape, opts, 1, padding), 1e-6, `${what} forward`);
    // Batch row 0 has no padding: exactly the unpadded rotation.
    const plain = await download(rotary(xt, opts));
    assert.equal(ours.subarray(0, n / 3), plain.subarray(0, n / 3), `${what}: row without padding`);
    tidy(() => backward(y, upload(dy, shape)));
    assertClose(await download(xt.grad!), rotary64(dy, shape, opts, -1, padding), 1e-5, `${what} backward`);
    for (const t of [xt.grad!, xt, y, pad]) t.dispose();
  }
});

test('rotary rejects bad options with the shapes in the message', async () => {
  await initGpu();
  const x: Tensor = upload(randn(16, 60), [1, 1, 2, 8]);
  assert.throws(() => rotary(x, { rotaryDims: 3, base: 10000 }), /rotaryDims must be even/);
  assert.throws(() => rotary(x, { rotaryDims: 10, base: 10000 }), /at most D = 8/);
  assert.throws(() => rotary(x, { rotaryDims: 8, base: 10000, positionOffset: -1 }), /positionOffset/);
  assert.throws(() => rotary(x, { rotaryDims: 8, base: 10000, positionOffset: 200000 }), /range reduction/);
  const padding = Tensor.fromArray([0, 1], [2], 'i32');
  assert.throws(() => rotary(x, { rotaryDims: 8, base: 10000, leftPadding: padding }), /leftPadding must be i32 \[1\]/);
  padding.dispose();
  const flat = x.reshape([2, 8]);
  assert.throws(() => rotary(flat, { rotaryDims: 8, base: 10000 }), /\[B, H, T, D\]/);
  x.dispose(); flat.dispose();
});

/**
 * The fused generation kernel against its composition: the heads of the projections (split of a packed
 * query_key_value, a permute each of q, k, v, or of the slices of q | k | v), rotary on q and k, and k, v copied
 * into a cache [B, KVH, S, D] at positionOffset; bit for bit, the cache's other positions untouched.
 */
async function checkQkvRotary(form: 'packed' | 'q, k, v' | 'q | k | v', [B, T, H, KVH, D, S]: number[], opts: RotaryOptions, seed: number): Promise<void> {
  const packed = form === 'packed';
  const what = `qkvRotary ${form} B${B} T${T} H${H} KVH${KVH} D${D} S${S} ${JSON.stringify({ ...opts, leftPadding: undefined })}`;
  const cacheData = [randn(B * KVH * S * D, seed), randn(B * KVH * S * D, seed + 1)];
  const widths = packed ? [3 * H * D] : [H * D, KVH * D, KVH * D];
  // q | k | v: the three side by side along the last dim, as decoding's grouped product writes them; its slices.
  const whole = form === 'q | k | v' ? upload(randn(B * T * (H + 2 * KVH) * D, seed + 2), [B, T, (H + 2 * KVH) * D]) : null;
  const projections = whole ? split(whole, 2, widths) : widths.map((w, i) => upload(randn(B * T * w, seed + 2 + i), [B, T, w]));
  const proj: QkvProjections = packed ? { qkv: projections[0] } : whole ? { concatenated: whole } : { q: projections[0], k: projections[1], v: projections[2] };
  const toHeads = (t: Tensor, n: number) => permute(reshape(t, [B, T, n, D]), [0, 2, 1, 3]);
  const [fusedK, fusedV, composedK, composedV] = [...cacheData, ...cacheData].map((c) => upload(c, [B, KVH, S, D]));
  const [fused, composed] = noGrad(() => {
    const q = qkvRotary(proj, { heads: H, kvHeads: KVH, headDim: D }, fusedK, fusedV, opts);
    const [q0, k0, v] = packed ? split(reshape(projections[0], [B, T, H, 3 * D]), 3, [D, D, D], [0, 2, 1, 3]) : [toHeads(projections[0], H), toHeads(projections[1], KVH), toHeads(projections[2], KVH)];
    const k = rotary(k0, opts);
    writeSlice(composedK, k, 2, opts.positionOffset ?? 0);
    writeSlice(composedV, v, 2, opts.positionOffset ?? 0);
    const reference = rotary(q0, opts);
    for (const t of [q0, k0, v, k]) t.dispose();
    return [q, reference];
  });
  assert.equal(await download(fused), await download(composed), `${what}: q`);
  assert.equal(await download(fusedK), await download(composedK), `${what}: the cache's k`);
  assert.equal(await download(fusedV), await download(composedV), `${what}: the cache's v`);
  for (const t of [...projections, fusedK, fusedV, composedK, composedV, fused, composed]) t.dispose();
  whole?.dispose();
}

test('qkvRotary (packed, q, k, v or q | k | v) equals split or the head permutes, rotary and the cache copies, bit for bit', async () => {
  await initGpu();
  const padding = (p: number[]) => Tensor.fromArray(p, [p.length], 'i32');
  const [two, three] = [padding([0, 2]), padding([0, 1, 4])];
  // GPT-NeoX: packed heads, a quarter of each rotated (and an odd pass-through), left padding, a decode chunk.
  await checkQkvRotary('packed', [2, 3, 3, 3, 10, 11], { rotaryDims: 4, base: 10000, positionOffset: 5, leftPadding: two }, 80);
  // Mistral: GQA, whole heads, one token a row into a cache with room left.
  await checkQkvRotary('q, k, v', [3, 1, 4, 2, 8, 9], { rotaryDims: 8, base: 1e6, positionOffset: 6, leftPadding: three }, 90);
  // A prompt's own keys (S = T, offset 0), no padding; D = 2 rotates its one pair only.
  await checkQkvRotary('q, k, v', [1, 5, 2, 1, 6, 5], { rotaryDims: 6, base: 10000 }, 100);
  await checkQkvRotary('packed', [1, 4, 2, 2, 2, 4], { rotaryDims: 2, base: 10000 }, 110);
  // Mistral decoding's grouped q | k | v: GQA with padding into a cache, and a prompt's own keys.
  await checkQkvRotary('q | k | v', [3, 1, 4, 2, 8, 9], { rotaryDims: 8, base: 1e6, positionOffset: 6, leftPadding: three }, 115);
  await checkQkvRotary('q | k | v', [2, 3, 6, 2, 4, 3], { rotaryDims: 4, base: 10000 }, 118);
  two.dispose(); three.dispose();
});

test('qkvRotary refuses gradients, shapes that disagree and a cache without room', async () => {
  await initGpu();
  const qkv = upload(randn(2 * 3 * 2 * 8, 120), [1, 2, 3 * 2 * 8]);
  const [k, v] = [0, 1].map(() => Tensor.zeros([1, 2, 3, 8]));
  const flat = v.reshape([1, 2, 24]);
  const heads = { heads: 2, kvHeads: 2, headDim: 8 }, opts = { rotaryDims: 8, base: 10000 };
  assert.throws(() => qkvRotary({ qkv }, heads, k, v, opts), /noGrad/);
  noGrad(() => {
    assert.throws(() => qkvRotary({ qkv }, { ...heads, kvHeads: 1 }, k, v, opts), /as many kv heads/);
    assert.throws(() => qkvRotary({ qkv }, { ...heads, heads: 3, kvHeads: 3 }, k, v, opts), /projections must be f32/);
    assert.throws(() => qkvRotary({ qkv }, heads, k, v, { ...opts, positionOffset: 2 }), /do not fit k and v's 3/);
    assert.throws(() => qkvRotary({ qkv }, heads, k, flat, opts), /k and v must be f32/);
  });
  for (const t of [qkv, k, v, flat]) t.dispose();
});

/**
 * rotaryHeads on the tape against split (or the head permutes) and rotary on q and on k, composed: q, k, v and the
 * projections' gradients of Σ <out, seed> over the outputs `used` (one left out gets no gradient), bit for bit; and
 * one dispatch each way.
 */
async function checkRotaryHeads(form: 'packed' | 'q, k, v', [B, T, H, KVH, D]: number[], opts: RotaryOptions, used: boolean[], seed: number): Promise<void> {
  const packed = form === 'packed';
  const what = `rotaryHeads ${form} B${B} T${T} H${H} KVH${KVH} D${D} rotaryDims ${opts.rotaryDims}${opts.leftPadding ? ' padded' : ''} (used ${used})`;
  const widths = packed ? [3 * H * D] : [H * D, KVH * D, KVH * D];
  const data = widths.map((w, i) => randn(B * T * w, seed + i));
  const seeds = [H, KVH, KVH].map((n, i) => randn(B * n * T * D, seed + 10 + i));
  const run = async (heads: (projections: Tensor[]) => Tensor[]) => {
    const projections = data.map((d, i) => upload(d, [B, T, widths[i]], true));
    ledger.reset();
    const values = await tidy(() => {
      const outs = heads(projections);
      const terms = outs.flatMap((o, i) => (used[i] ? [sumLastDim(reshape(mul(o, upload(seeds[i], [...o.shape])), [o.numel]))] : []));
      backward(terms.reduce((a, b) => add(a, b)));
      return Promise.all(outs.map((o) => download(o)));
    });
    // A projection no gradient reached (the composed path's, of an unused output) has none: zeros.
    const grads = await Promise.all(projections.map(async (p) => (p.grad ? download(p.grad) : new Float64Array(p.numel))));
    const byOp = Object.fromEntries(ledger.byOp().map((r) => [r.key, r.dispatches]));
    for (const p of projections) p.dispose();
    return { values, grads, byOp };
  };
  const toHeads = (t: Tensor, n: number) => permute(reshape(t, [B, T, n, D]), [0, 2, 1, 3]);
  const composed = await run((p) => {
    const [q, k, v] = packed ? split(reshape(p[0], [B, T, H, 3 * D]), 3, [D, D, D], [0, 2, 1, 3]) : [toHeads(p[0], H), toHeads(p[1], KVH), toHeads(p[2], KVH)];
    return [rotary(q, opts), rotary(k, opts), v];
  });
  const fused = await run((p) => rotaryHeads(packed ? { qkv: p[0] } : { q: p[0], k: p[1], v: p[2] }, { heads: H, kvHeads: KVH, headDim: D }, opts));
  ['q', 'k', 'v'].forEach((name, i) => assert.equal(fused.values[i], composed.values[i], `${what}: ${name}`));
  fused.grads.forEach((g, i) => assert.equal(g, composed.grads[i], `${what}: gradient of projection ${i}`));
  assert.is(fused.byOp.qkvRotary, 1, `${what}: one forward dispatch`);
  assert.is(fused.byOp.qkvRotaryBackward, 1, `${what}: one backward dispatch`);
  for (const op of ['split', 'splitBackward', 'permute', 'rotary', 'rotaryBackward']) assert.is(fused.byOp[op], undefined, `${what}: no ${op}`);
}

test('rotaryHeads (packed or q, k, v) on the tape equals split or the head permutes and rotary, both ways, bit for bit', async () => {
  await initGpu();
  const all = [true, true, true];
  // GPT-NeoX: packed heads, a quarter of each rotated and an odd pass-through; then Mistral: GQA, whole heads.
  await checkRotaryHeads('packed', [2, 3, 3, 3, 10], { rotaryDims: 4, base: 10000 }, all, 130);
  await checkRotaryHeads('q, k, v', [2, 5, 4, 2, 8], { rotaryDims: 8, base: 1e6 }, all, 140);
  // An output no gradient reaches (v unused; then q), and left padding.
  const padding = Tensor.fromArray([0, 2], [2], 'i32');
  await checkRotaryHeads('packed', [2, 4, 2, 2, 6], { rotaryDims: 6, base: 10000, leftPadding: padding }, [true, true, false], 150);
  await checkRotaryHeads('q, k, v', [2, 3, 2, 1, 4], { rotaryDims: 2, base: 10000, leftPadding: padding }, [false, true, true], 160);
  padding.dispose();
  const qkv = upload(randn(2 * 3 * 2 * 8, 170), [1, 2, 3 * 2 * 8], true);
  assert.throws(() => rotaryHeads({ qkv }, { heads: 2, kvHeads: 2, headDim: 8 }, { rotaryDims: 8, base: 10000, positionOffset: 1 }), /positionOffset 1: without a cache/);
  assert.throws(() => rotaryHeads({ qkv }, { heads: 2, kvHeads: 1, headDim: 8 }, { rotaryDims: 8, base: 10000 }), /as many kv heads/);
  qkv.dispose();
});

test('qkvRotary\'s kernels give the same bits whatever elements an invocation takes, every index digit carrying', async () => {
  await initGpu();
  // GQA with left padding into a cache with room: 7 lanes (D 10, 6 rotated), 3 + 2·2 = 7 heads a token, T 5; 8 threads
  // of 13 elements step by 8 = a head and a lane, so that lanes, heads, positions and batch rows wrap within a run.
  const [B, T, H, KVH, D, S, rotaryDims] = [3, 5, 3, 2, 10, 9, 6];
  const source = { qRowStride: H * D, kvRowStride: KVH * D, headStride: D, kOffset: 0, vOffset: 0 };
  const layout: QkvRotaryLayout = { batch: B, seqLen: T, heads: H, kvHeads: KVH, headDim: D, kvLength: S, leftPadding: true, oneProjection: false, source };
  const padding = Tensor.fromArray([0, 2, 4], [B], 'i32');
  const invFreq = Tensor.fromArray(inverseFrequencies(rotaryDims, 10000), [rotaryDims / 2]);
  const projections = [H, KVH, KVH].map((n, i) => upload(randn(B * T * n * D, 180 + i), [B, T, n * D]));
  const dHeads = [H, KVH, KVH].map((n, i) => upload(randn(B * n * T * D, 190 + i), [B, n, T, D]));
  const run = async (shape: ElementwiseShape) => {
    const [q, k, v] = [Tensor.empty([B, H, T, D]), Tensor.zeros([B, KVH, S, D]), Tensor.zeros([B, KVH, S, D])];
    launch(qkvRotaryCall(deviceLimits(), layout, rotaryDims, 2, false, shape), [...projections, invFreq, padding], [q, k, v]);
    // The backward from the heads of the prompt's own keys (kvLength T, offset 0).
    const grads = projections.map((t) => Tensor.empty(t.shape));
    launch(qkvRotaryCall(deviceLimits(), { ...layout, kvLength: T }, rotaryDims, 0, true, shape), [...dHeads, invFreq, padding], grads);
    const out = await Promise.all([q, k, v, ...grads].map((t) => download(t)));
    for (const t of [q, k, v, ...grads]) t.dispose();
    return out;
  };
  const expected = await run(ELEMENTWISE_SHAPES.gpu);
  for (const shape of [ELEMENTWISE_SHAPES.cpu, { threads: 8, perThread: 13, workgroups: 1 }, { threads: 4, perThread: 64, workgroups: 1 }]) {
    const got = await run(shape);
    ['q', 'k', 'v', 'dq', 'dk', 'dv'].forEach((name, i) => assert.equal(got[i], expected[i], `${shape.threads} threads of up to ${shape.perThread}: ${name}`));
  }
  for (const t of [padding, invFreq, ...projections, ...dHeads]) t.dispose();
});

test.run();
