// The grouped small-M products (kernels/matmul_small_m.ts SmallMGroup, engine/ops/matmul.ts linearGroup): the same
// bits as the separate small-M products (and swiglu on them), close to float64, charged as the parts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { noGrad } from '../../engine/autodiff.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { swiglu } from '../../engine/ops/activations.ts';
import { linear, linearGroup } from '../../engine/ops/matmul.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import type { FloatDType } from '../../kernels/dtype.ts';
import { SMALL_M_VARIANTS, matmulSmallMCall, matmulSmallMGroupCall } from '../../kernels/matmul_small_m.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];

/** x [M, K] · w [N, K]ᵀ in float64 (w as stored). */
function ref(X: Float64Array, W: Float64Array, M: number, N: number, K: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += X[m * K + k] * W[n * K + k];
      out[m * N + n] = s;
    }
  return out;
}

const silu = (g: number) => g / (1 + Math.exp(-g));

/** [a | b | c] along the rows of M rows. */
function concatRows(parts: Float64Array[], M: number): Float64Array {
  const widths = parts.map((p) => p.length / M);
  return Float64Array.from({ length: parts.reduce((n, p) => n + p.length, 0) }, (_, i) => {
    const row = widths.reduce((a, b) => a + b, 0);
    const m = Math.floor(i / row);
    let n = i % row, j = 0;
    while (n >= widths[j]) n -= widths[j++];
    return parts[j][m * widths[j] + n];
  });
}

// K 7 and 131 are odd (16-bit rows start mid-word), 4096 Mistral's; widths not multiples of any variant's columns.
const SHAPES = [
  { K: 7, widths: [5, 3, 3] },
  { K: 131, widths: [37, 13, 13] },
  { K: 4096, widths: [64, 16, 16] },
] as const;

test('concatenated q | k | v: the separate linear products bit for bit, close to float64', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const { K, widths } of SHAPES)
    for (const dtype of DTYPES)
      for (const M of [1, 3, 8]) {
        const what = `K ${K} widths [${widths}] ${dtype} M ${M}`;
        const X = randn(M * K, M + K);
        const x = upload(X, [M, K]);
        const ws = widths.map((n, j) => Tensor.fromArray(randn(n * K, 10 * j + K), [n, K], dtype));
        ledger.reset();
        const grouped = noGrad(() => linearGroup(x, ws, 'concatenated'))!;
        const [row] = ledger.byOp();
        assert.equal([row.key, row.dispatches], ['matmulSmallM', 1], what);
        const separate = await Promise.all(ws.map((w) => tidy(() => download(noGrad(() => linear(x, w))))));
        const ours = await download(grouped);
        assert.equal(grouped.shape, [M, widths[0] + widths[1] + widths[2]], what);
        assert.equal(ours, concatRows(separate, M), `${what}: bits`);
        const W = await Promise.all(ws.map(download));
        assertClose(ours, concatRows(W.map((w, j) => ref(X, w, M, widths[j], K)), M), 1e-5, what);
        for (const t of [x, grouped, ...ws]) t.dispose();
      }
  assert.is(pool.liveBytes, base);
});

test('gated: swiglu of the separate gate and up products bit for bit, close to float64', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const { K, widths: [N] } of SHAPES)
    for (const dtype of DTYPES)
      for (const M of [1, 3, 8]) {
        const what = `K ${K} N ${N} ${dtype} M ${M}`;
        const X = randn(M * K, M + K + 1);
        const x = upload(X, [M, K]);
        const [g, u] = [0, 1].map((j) => Tensor.fromArray(randn(N * K, 20 * j + K, 0.5), [N, K], dtype));
        ledger.reset();
        const gated = noGrad(() => linearGroup(x, [g, u], 'swiglu'))!;
        const rows = ledger.byOp();
        assert.equal(Object.fromEntries(rows.map((r) => [r.key, r.dispatches])), { matmulSmallM: 1, swiglu: 0 }, `${what}: one dispatch`);
        const ours = await download(gated);
        assert.equal(gated.shape, [M, N], what);
        assert.equal(ours, await tidy(() => download(noGrad(() => swiglu(linear(x, g), linear(x, u))))), `${what}: bits`);
        const [G, U] = await Promise.all([g, u].map(download));
        const [gRef, uRef] = [ref(X, G, M, N, K), ref(X, U, M, N, K)];
        assertClose(ours, gRef.map((v, i) => silu(v) * uRef[i]), 1e-5, what);
        for (const t of [x, gated, g, u]) t.dispose();
      }
  assert.is(pool.liveBytes, base);
});

test('every small-M variant: a grouped call equals its parts called with the same variant, bit for bit', async () => {
  await initGpu();
  const [M, K, widths] = [5, 131, [37, 13, 13] as const];
  for (const [i, [name, variant]] of Object.entries(SMALL_M_VARIANTS).entries()) {
    const dtype = DTYPES[i % 3];
    const x = upload(randn(M * K, 3), [M, K]);
    const ws = widths.map((n, j) => Tensor.fromArray(randn(n * K, 30 + j), [n, K], dtype));
    const part = (w: Tensor) => {
      const out = Tensor.empty([M, w.shape[0]]);
      const s = { batch: 1, M, N: w.shape[0], K, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: false, dtypeA: 'f32', dtypeB: dtype } as const;
      launch(matmulSmallMCall(deviceLimits(), s, variant), [x, w, null, null], [out]);
      return out;
    };
    const parts = ws.map(part);
    const concatenated = Tensor.empty([M, widths[0] + widths[1] + widths[2]]);
    launch(matmulSmallMGroupCall(deviceLimits(), M, K, dtype, { form: 'concatenated', widths }, variant), [x, ...ws], [concatenated]);
    assert.equal(await download(concatenated), concatRows(await Promise.all(parts.map(download)), M), `${name} ${dtype}: concatenated`);
    const gated = Tensor.empty([M, widths[1]]);
    launch(matmulSmallMGroupCall(deviceLimits(), M, K, dtype, { form: 'gated', width: widths[1], fn: 'silu', op: 'swiglu' }, variant), [x, ws[1], ws[2], null], [gated]);
    assert.equal(await download(gated), await tidy(() => download(noGrad(() => swiglu(parts[1], parts[2])))), `${name} ${dtype}: gated`);
    for (const t of [x, ...ws, ...parts, concatenated, gated]) t.dispose();
  }
  assert.throws(() => matmulSmallMGroupCall(deviceLimits(), 2, 8, 'f32', { form: 'gated', width: 4, fn: 'silu', op: 'swiglu' }, { columns: 3, threads: 64 }), /even number of columns/);
  assert.throws(() => matmulSmallMGroupCall(deviceLimits(), 9, 8, 'f32', { form: 'concatenated', widths: [4, 2, 2] }, SMALL_M_VARIANTS['4x64']), /M 9/);
});

test('linearGroup: the parts\' FLOPs in one dispatch (the gate under swiglu, as the swiglu op charges it); null where it does not apply', async () => {
  await initGpu();
  const [M, K, N] = [3, 64, 24];
  const charged = (fn: () => unknown) => tidy(() => {
    ledger.reset();
    noGrad(fn);
    return Object.fromEntries(ledger.byOp().map((r) => [r.key, { flops: r.flops, dispatches: r.dispatches }]));
  });
  tidy(() => {
    const x = upload(randn(M * K, 1), [M, K]);
    const [q, k, v] = [N, N / 2, N / 2].map((n, j) => Tensor.fromArray(randn(n * K, 2 + j), [n, K], 'bf16'));
    const sep = charged(() => [q, k, v].map((w) => linear(x, w)));
    assert.equal(charged(() => linearGroup(x, [q, k, v], 'concatenated')), { matmulSmallM: { flops: sep.matmulSmallM.flops, dispatches: 1 } });
    const gatedSep = charged(() => swiglu(linear(x, q), linear(x, q)));
    assert.equal(charged(() => linearGroup(x, [q, q], 'swiglu')), {
      matmulSmallM: { flops: gatedSep.matmulSmallM.flops, dispatches: 1 }, swiglu: { flops: gatedSep.swiglu.flops, dispatches: 0 },
    });
    assert.is(gatedSep.swiglu.flops, 7 * M * N);
    // Where the separate products would not run on the small-M kernel, or a gradient is recorded: null.
    assert.is(linearGroup(x, [q, k, v], 'concatenated'), null, 'gradient recording');
    assert.is(noGrad(() => linearGroup(upload(randn(9 * K, 4), [9, K]), [q, k, v], 'concatenated')), null, '9 rows');
    assert.is(noGrad(() => linearGroup(x, [q, Tensor.zeros([N / 2, K]), v], 'concatenated')), null, 'weights of two formats');
    assert.throws(() => noGrad(() => linearGroup(x, [q, k], 'concatenated')), /three weights/);
    assert.throws(() => noGrad(() => linearGroup(x, [q, k], 'swiglu')), /one shape/);
  });
});

test.run();
