// The epilogue of the matmul kernels (kernels/matmul_shape.ts epilogueParts): C = f(op(A)·op(B) + bias) + residual, the
// residual against a float64 reference on every f32 kernel (tiled, rows, small-M) and against linear + add through
// the op, with gradients; the activation against the activation op after the product (its composed form).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward, clearTape, noGrad } from '../../engine/autodiff.ts';
import { gelu } from '../../engine/ops/activations.ts';
import { gpu, subgroupDevice } from '../../engine/gpu.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { add } from '../../engine/ops/elementwise.ts';
import { linear } from '../../engine/ops/matmul.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { matmulCall, matmulRowsCall, matmulRowsUnfit, MATMUL_ROWS_VARIANTS, MATMUL_TILES, type MatmulShape } from '../../kernels/matmul.ts';
import { matmulSmallMCall, SMALL_M_VARIANTS } from '../../kernels/matmul_small_m.ts';
import { planMatmulTensorCore } from '../../kernels/matmul_tensor_core.ts';
import { emulatedMatmulTensorCoreCall } from '../support/subgroup_matrix_emulation.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';

/** x [M, K] · w [N, K]ᵀ + bias [N] + residual [M, N], in float64. */
function reference(M: number, N: number, K: number, x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number>, residual: ArrayLike<number>): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      out[m * N + n] = s + bias[n] + residual[m * N + n];
    }
  return out;
}

const shapeOf = (M: number, N: number, K: number): MatmulShape => ({
  batch: 1, M, N, K, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: true, hasResidual: true, dtypeA: 'f32', dtypeB: 'f32',
});

test('every f32 kernel adds the residual as it stores C (tiled, rows, small-M), ragged edges included', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const limits = deviceLimits();
  const sub = subgroupDevice();
  const kernels: { name: string; M: number; call: (s: MatmulShape) => ReturnType<typeof matmulCall> | null }[] = [
    { name: 'tiled 32x32', M: 37, call: (s) => matmulCall(limits, s, MATMUL_TILES['32x32x16/4x4']) },
    { name: 'tiled 128x128', M: 37, call: (s) => matmulCall(limits, s, MATMUL_TILES['128x128x16/8x8']) },
    { name: 'rows 16x64/16', M: 37, call: (s) => (matmulRowsUnfit(limits, sub, s, MATMUL_ROWS_VARIANTS['rows 16x64/16']) ? null : matmulRowsCall(limits, sub, s, MATMUL_ROWS_VARIANTS['rows 16x64/16'])) },
    { name: 'small-M 4x64, 1 row', M: 1, call: (s) => matmulSmallMCall(limits, s, SMALL_M_VARIANTS['4x64']) },
    { name: 'small-M 2x256, 5 rows', M: 5, call: (s) => matmulSmallMCall(limits, s, SMALL_M_VARIANTS['2x256']) },
  ];
  const [N, K] = [44, 20]; // N not a multiple of any tile; K a multiple of 4 (the rows kernel's quads)
  let ran = 0;
  for (const { name, M, call } of kernels) {
    const s = shapeOf(M, N, K);
    const c = call(s);
    if (!c) { console.log(`  skipped: ${name} does not run on this device`); continue; }
    const [X, W, bias, R] = [randn(M * K, 1), randn(N * K, 2), randn(N, 3), randn(M * N, 4)];
    const ts = [upload(X, [M, K]), upload(W, [N, K]), upload(bias, [N]), upload(R, [M, N])];
    const out = Tensor.empty([M, N]);
    launch(c, ts, [out]);
    assertClose(await download(out), reference(M, N, K, X, W, bias, R), 1e-5, name);
    assert.is(c.cost.flops, 2 * M * N * K + 2 * M * N, `${name}: a multiply-add per (output, k), an add each for bias and residual`);
    for (const t of [...ts, out]) t.dispose();
    ran++;
  }
  assert.ok(ran >= 4, 'the tiled and small-M kernels run on every device');
  assert.is(pool.liveBytes, base);
});

test('linear with a residual equals linear then add, bit for bit, with the same gradients, and one dispatch fewer', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const lead of [[2, 3, 5], [1, 1], [3]]) { // rows or tiled; small-M for 1 and 3 rows
    const [N, K] = [24, 16];
    const rows = lead.reduce((a, b) => a * b, 1);
    const data = { x: randn(rows * K, 5), w: randn(N * K, 6), b: randn(N, 7), r: randn(rows * N, 8), seed: randn(rows * N, 9) };
    const grads: Float64Array[][] = [];
    const outs: Float64Array[] = [];
    const dispatches: number[] = [];
    for (const fused of [true, false]) {
      const x = upload(data.x, [...lead, K], true);
      const w = upload(data.w, [N, K], true);
      const b = upload(data.b, [N], true);
      const r = upload(data.r, [...lead, N], true);
      ledger.reset();
      const y = tidy(() => (fused ? linear(x, w, b, { residual: r }) : add(r, linear(x, w, b))));
      dispatches.push(ledger.byOp().reduce((n, o) => n + o.dispatches, 0));
      outs.push(await download(y));
      const seed = upload(data.seed, [...lead, N]);
      backward(y, seed);
      grads.push(await Promise.all([x, w, b, r].map((t) => download(t.grad!))));
      for (const t of [x, w, b, r, y, seed]) { t.grad?.dispose(); t.dispose(); }
    }
    assert.equal(outs[0], outs[1], `[${lead}]: forward`);
    for (const [i, name] of ['dx', 'dweight', 'dbias', 'dresidual'].entries()) assert.equal(grads[0]![i], grads[1]![i], `[${lead}]: ${name}`);
    assert.equal(grads[0]![3], data.seed, `[${lead}]: the residual's gradient is the output's`);
    assert.is(dispatches[0], dispatches[1]! - 1, `[${lead}]: the add is gone`);
  }
  assert.is(pool.liveBytes, base);
});

test('linear with a GELU: fused into the store without a gradient to record (every kernel), composed with one', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const dispatchesOf = (fn: () => Tensor) => {
    ledger.reset();
    const y = fn();
    const rows = ledger.byOp();
    return { y, dispatches: rows.reduce((n, o) => n + o.dispatches, 0), flopsByOp: Object.fromEntries(rows.map((o) => [o.key, o.flops])) };
  };
  for (const lead of [[2, 3, 5], [1], [4]]) { // rows or tiled, and small-M
    const [N, K] = [36, 12];
    const rows = lead.reduce((a, b) => a * b, 1);
    const x = upload(randn(rows * K, 10, 2), [...lead, K], true);
    const w = upload(randn(N * K, 11), [N, K], true);
    const b = upload(randn(N, 12), [N], true);
    const r = upload(randn(rows * N, 13), [...lead, N]);
    for (const residual of [undefined, r]) {
      const what = `[${lead}]${residual ? ' + residual' : ''}`;
      const composed = noGrad(() => dispatchesOf(() => tidy(() => (residual ? add(gelu(linear(x, w, b)), residual) : gelu(linear(x, w, b))))));
      const fused = noGrad(() => dispatchesOf(() => linear(x, w, b, { activation: 'gelu', residual })));
      assertClose(await download(fused.y), await download(composed.y), 1e-6, `${what}: fused GELU`);
      assert.is(fused.dispatches, 1, `${what}: one dispatch`);
      // The ledger charges the fused GELU and residual add to 'gelu' and 'add', as the composition's kernels.
      assert.equal(fused.flopsByOp, composed.flopsByOp, `${what}: FLOPs by op`);
      // With a gradient to record the product is kept for the activation's backward: the composed ops.
      const taped = dispatchesOf(() => tidy(() => linear(x, w, b, { activation: 'gelu', residual })));
      assert.is(taped.dispatches, residual ? 3 : 2, `${what}: composed under the tape`);
      assertClose(await download(taped.y), await download(composed.y), 0, `${what}: taped = composed`);
      clearTape();
      for (const t of [composed.y, fused.y, taped.y]) t.dispose();
    }
    for (const t of [x, w, b, r]) t.dispose();
  }
  assert.is(pool.liveBytes, base);
});

test('the tensor-core kernel\'s epilogue (emulated subgroup matrices): bias, GELU and residual as the tiled kernel stores them', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('  skipped: no shader-f16 on this device'); return; }
  const base = pool.liveBytes;
  const [M, N, K] = [12, 20, 16];
  const limits = deviceLimits();
  const device = { subgroupSize: 8, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxInvocations: limits.maxComputeInvocationsPerWorkgroup };
  const variant = planMatmulTensorCore(M, N, { M: 8, N: 8, K: 8 }, device).variant!;
  const ts = [Tensor.fromArray(randn(M * K, 21), [M, K], 'f16'), Tensor.fromArray(randn(N * K, 22), [N, K], 'f16'), upload(randn(N, 23), [N]), upload(randn(M * N, 24), [M, N])];
  const s: MatmulShape = { ...shapeOf(M, N, K), dtypeA: 'f16', dtypeB: 'f16', activation: 'gelu' };
  const [cores, tiled] = [Tensor.empty([M, N]), Tensor.empty([M, N])];
  launch(emulatedMatmulTensorCoreCall(s, variant), ts, [cores]);
  launch(matmulCall(limits, s, MATMUL_TILES['32x32x16/4x4']), ts, [tiled]);
  assertClose(await download(cores), await download(tiled), 1e-5, 'tensor cores (emulated) vs tiled, f16 operands');
  for (const t of [...ts, cores, tiled]) t.dispose();
  assert.is(pool.liveBytes, base);
});

test('linear refuses a residual of another shape or dtype, naming both', async () => {
  await initGpu();
  const x = Tensor.zeros([2, 3, 4]);
  const w = Tensor.zeros([5, 4]);
  const wrong = Tensor.zeros([2, 5]);
  assert.throws(() => linear(x, w, undefined, { residual: wrong }), /linear \[2, 3, 4\] · \[5, 4\]ᵀ: residual f32 \[2, 5\] should be f32 \[2, 3, 5\]/);
  const half = Tensor.zeros([2, 3, 5], 'f16');
  assert.throws(() => linear(x, w, undefined, { residual: half }), /residual f16 \[2, 3, 5\] should be f32 \[2, 3, 5\]/);
  for (const t of [x, w, wrong, half]) t.dispose();
});

test.run();
