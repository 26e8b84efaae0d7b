import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { linear, matmul } from '../../engine/ops/matmul.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, numelOf, tidy } from '../../engine/tensor.ts';
import { MATMUL_DEVICE_CLASSES, MATMUL_ROWS_VARIANTS, MATMUL_TABLE, MATMUL_TILES, MAX_THREAD_TILE, checkTile, chosenMatmulCall, matmulBiasKernel, matmulBiasResidualKernel, matmulCall, matmulKernel, matmulRowsCall, matmulRowsKernels, matmulRowsUnfit } from '../../kernels/matmul.ts';
import { subgroupDevice } from '../../engine/gpu.ts';
import { MATMUL_INPUTS, type MatmulShape, type MatmulTable } from '../../kernels/matmul.ts';
import { MATMUL_VEC4_VARIANTS, matmulVec4Call, matmulVec4PlainKernel, matmulVec4Unfit, type MatmulVec4Variant } from '../../kernels/matmul_vec4.ts';
import type { KernelCall } from '../../kernels/spec.ts';
import type { FloatDType } from '../../kernels/dtype.ts';
import { SMALL_M_MAX_COLUMNS, SMALL_M_MAX_ROWS, SMALL_M_VARIANTS, matmulSmallMCall, matmulSmallMKernel, smallMVariantFor } from '../../kernels/matmul_small_m.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randn, relErr, upload } from '../support/util.ts';

/** op(A) is M×K and op(B) K×N per batch entry; a shared operand is one matrix used by every entry. */
interface Problem {
  batchDims: number[];
  M: number; N: number; K: number;
  transA: boolean; transB: boolean;
  sharedA: boolean; sharedB: boolean;
  bias: boolean;
  dtypeA: FloatDType; dtypeB: FloatDType;
}

const FORMS = [[false, false], [false, true], [true, false], [true, true]] as const;

function problem(M: number, N: number, K: number, transA: boolean, transB: boolean, more: Partial<Problem> = {}): Problem {
  return { batchDims: [], M, N, K, transA, transB, sharedA: false, sharedB: false, bias: false, dtypeA: 'f32', dtypeB: 'f32', ...more };
}

function describe(p: Problem): string {
  const batch = p.batchDims.length ? `batch [${p.batchDims}]${p.sharedA ? ' shared A' : ''}${p.sharedB ? ' shared B' : ''} ` : '';
  const dtypes = p.dtypeA !== 'f32' || p.dtypeB !== 'f32' ? ` A ${p.dtypeA} B ${p.dtypeB}` : '';
  return `${batch}M=${p.M} N=${p.N} K=${p.K}${p.transA ? ' Aᵀ' : ''}${p.transB ? ' Bᵀ' : ''}${p.bias ? ' +bias' : ''}${dtypes}`;
}

const batchOf = (p: Problem) => numelOf(p.batchDims);
const shapeA = (p: Problem) => [...(p.sharedA ? [] : p.batchDims), ...(p.transA ? [p.K, p.M] : [p.M, p.K])];
const shapeB = (p: Problem) => [...(p.sharedB ? [] : p.batchDims), ...(p.transB ? [p.N, p.K] : [p.K, p.N])];
const aIndex = (p: Problem, b: number, m: number, k: number) => (p.sharedA ? 0 : b * p.M * p.K) + (p.transA ? k * p.M + m : m * p.K + k);
const bIndex = (p: Problem, b: number, k: number, n: number) => (p.sharedB ? 0 : b * p.K * p.N) + (p.transB ? n * p.K + k : k * p.N + n);

/** float64 C[b, m, n] = Σ_k op(A)[b, m, k] op(B)[b, k, n] + bias[n]. */
function refMatmul(p: Problem, A: Float64Array, B: Float64Array, bias: Float64Array | null): Float64Array {
  const C = new Float64Array(batchOf(p) * p.M * p.N);
  for (let b = 0; b < batchOf(p); b++)
    for (let m = 0; m < p.M; m++)
      for (let n = 0; n < p.N; n++) {
        let s = bias ? bias[n] : 0;
        for (let k = 0; k < p.K; k++) s += A[aIndex(p, b, m, k)] * B[bIndex(p, b, k, n)];
        C[(b * p.M + m) * p.N + n] = s;
      }
  return C;
}

/** float64 gradients of ⟨C, seed⟩ with C = refMatmul(...): each product term sends seed·(other factor) to its factor. */
function refMatmulGrads(p: Problem, A: Float64Array, B: Float64Array, seed: Float64Array) {
  const gA = new Float64Array(A.length), gB = new Float64Array(B.length), gBias = new Float64Array(p.N);
  for (let b = 0; b < batchOf(p); b++)
    for (let m = 0; m < p.M; m++)
      for (let n = 0; n < p.N; n++) {
        const g = seed[(b * p.M + m) * p.N + n];
        gBias[n] += g;
        for (let k = 0; k < p.K; k++) {
          gA[aIndex(p, b, m, k)] += g * B[bIndex(p, b, k, n)];
          gB[bIndex(p, b, k, n)] += g * A[aIndex(p, b, m, k)];
        }
      }
  return { gA, gB, gBias };
}

function inputsOf(p: Problem, seed: number) {
  const A = randn(numelOf(shapeA(p)), seed);
  const B = randn(numelOf(shapeB(p)), seed + 1);
  const bias = p.bias ? randn(p.N, seed + 2) : null;
  return { A, B, bias };
}

/** A tensor of dtype holding values (16-bit formats round them); only f32 tensors can require a gradient. */
function uploadAs(values: Float64Array, shape: number[], dtype: FloatDType, requiresGrad: boolean): Tensor {
  const t = Tensor.fromArray(values, shape, dtype);
  t.requiresGrad = requiresGrad && dtype === 'f32';
  return t;
}

/**
 * Runs matmul on the GPU and compares the output (and, with grads, the gradient of every f32 input) with float64.
 * The reference multiplies the operands' values as stored, so 16-bit rounding does not widen the tolerance.
 */
async function check(p: Problem, grads: boolean, seed = 1): Promise<void> {
  const base = pool.liveBytes;
  const inputs = inputsOf(p, seed);
  const a = uploadAs(inputs.A, shapeA(p), p.dtypeA, grads);
  const b = uploadAs(inputs.B, shapeB(p), p.dtypeB, grads);
  const [A, B, bias] = [await download(a), await download(b), inputs.bias];
  const biasT = bias ? upload(bias, [p.N], grads) : undefined;
  const out = matmul(a, b, { transA: p.transA, transB: p.transB, bias: biasT });
  assert.equal(out.shape, [...p.batchDims, p.M, p.N], describe(p));
  assertClose(await download(out), refMatmul(p, A, B, bias), 1e-5, `forward ${describe(p)}`);
  if (grads) {
    const seedData = randn(out.numel, seed + 3);
    const seedT = upload(seedData, [...out.shape]);
    backward(out, seedT);
    const ref = refMatmulGrads(p, A, B, seedData);
    for (const [t, gRef, name] of [[a, ref.gA, 'dA'], [b, ref.gB, 'dB']] as const) {
      if (t.requiresGrad) assertClose(await download(t.grad!), gRef, 1e-4, `${name} ${describe(p)}`);
      else assert.is(t.grad, null, `${name}: a 16-bit operand gets no gradient`);
    }
    if (biasT) assertClose(await download(biasT.grad!), ref.gBias, 1e-4, `dbias ${describe(p)}`);
    seedT.dispose();
  }
  for (const t of [a, b, biasT, out]) { t?.grad?.dispose(); t?.dispose(); }
  assert.is(pool.liveBytes, base, `pool leak after ${describe(p)}`);
}

test('spec and shader agree: bindings, params, constants, register block; the variant without a bias and residual binds neither', () => {
  const bindingsOf = (source: string) => [...source.replace(/\/\/.*$/gm, '').matchAll(/@binding\((\d+)\) var<([^>]+)> (\w+)/g)]
    .map((m) => [Number(m[1]), m[2], m[3]] as const).sort((x, y) => x[0] - y[0]);
  const src = matmulBiasResidualKernel.source.replace(/\/\/.*$/gm, ''); // comments may look like declarations
  const expected = [
    ...matmulBiasResidualKernel.inputs.map((n) => ['storage, read', n]),
    ...matmulBiasResidualKernel.outputs.map((n) => ['storage, read_write', n]),
    ['uniform', 'params'],
  ].map(([space, n], i) => [i, space, n]);
  assert.equal(bindingsOf(src), expected);
  assert.equal(matmulKernel.absent, ['bias', 'residual']);
  assert.equal(bindingsOf(matmulKernel.source), expected.filter(([, , n]) => n !== 'bias' && n !== 'residual'));
  assert.equal(bindingsOf(matmulBiasKernel.source), expected.filter(([, , n]) => n !== 'residual'));
  const fields = [...src.match(/struct Params \{([^}]*)\}/)![1].matchAll(/(\w+): (\w+)/g)].map((m) => [m[1], m[2]]);
  assert.equal(fields, matmulKernel.params.map(([n, t]) => [n, t]));
  for (const c of matmulKernel.constants!) assert.match(src, new RegExp(`override ${c}: `), `override ${c}`);
  assert.match(src, new RegExp(`const MAX_THREAD_TILE = ${MAX_THREAD_TILE}u;`));
});

test('small-M spec and shader agree on the register arrays', () => {
  assert.match(matmulSmallMKernel.source, new RegExp(`const MAX_ROWS = ${SMALL_M_MAX_ROWS}u;`));
  assert.match(matmulSmallMKernel.source, new RegExp(`const MAX_COLUMNS = ${SMALL_M_MAX_COLUMNS}u;`));
});

test('float64 reference gradients match finite differences', () => {
  // The reference is bilinear, so central differences are exact up to rounding.
  for (const [transA, transB] of FORMS)
    for (const shared of [{}, { sharedA: true }, { sharedB: true }]) {
      const p = problem(2, 3, 4, transA, transB, { batchDims: [2], bias: true, ...shared });
      const { A, B, bias } = inputsOf(p, 7);
      const seed = randn(batchOf(p) * p.M * p.N, 8);
      const ref = refMatmulGrads(p, A, B, seed);
      assert.ok(relErr(finiteDiff((x) => dot(refMatmul(p, x, B, bias), seed), A), ref.gA) < 1e-7, `dA ${describe(p)}`);
      assert.ok(relErr(finiteDiff((x) => dot(refMatmul(p, A, x, bias), seed), B), ref.gB) < 1e-7, `dB ${describe(p)}`);
      assert.ok(relErr(finiteDiff((x) => dot(refMatmul(p, A, B, x), seed), bias!), ref.gBias) < 1e-7, `dbias ${describe(p)}`);
    }
});

test('forward: all four transpose forms at ragged shapes', async () => {
  await initGpu();
  const shapes = [[1, 1, 1], [7, 33, 130], [130, 7, 33], [33, 130, 7], [64, 64, 64]];
  for (const [M, N, K] of shapes)
    for (const [transA, transB] of FORMS) await check(problem(M, N, K, transA, transB), false);
});

test('forward: batched, with and without a shared operand, and bias', async () => {
  await initGpu();
  for (const [transA, transB] of FORMS) {
    await check(problem(7, 33, 5, transA, transB, { batchDims: [2, 3] }), false);
    await check(problem(7, 33, 5, transA, transB, { batchDims: [3], sharedA: true }), false);
    await check(problem(7, 33, 5, transA, transB, { batchDims: [2, 3], sharedB: true }), false);
    await check(problem(33, 130, 7, transA, transB, { bias: true }), false);
    await check(problem(7, 33, 5, transA, transB, { batchDims: [3], sharedB: true, bias: true }), false);
  }
});

test('gradients: all forms, bias, batched with and without a shared operand', async () => {
  await initGpu();
  for (const [transA, transB] of FORMS) {
    await check(problem(7, 33, 130, transA, transB, { bias: true }), true);
    await check(problem(7, 13, 5, transA, transB, { batchDims: [3] }), true);
    await check(problem(7, 13, 5, transA, transB, { batchDims: [3], sharedA: true }), true);
    await check(problem(7, 13, 5, transA, transB, { batchDims: [3], sharedB: true, bias: true }), true);
  }
});

test('forward: 16-bit B (f16, bf16) in all four forms at ragged shapes, batched, and with a 16-bit A', async () => {
  await initGpu();
  // Odd K and N start rows (and batch entries: K·N = 165) in the middle of a word, so both half-words are read.
  for (const dtypeB of ['f16', 'bf16'] as const)
    for (const [transA, transB] of FORMS) {
      for (const [M, N, K] of [[1, 1, 1], [7, 33, 130], [130, 7, 33], [33, 130, 7]]) await check(problem(M, N, K, transA, transB, { dtypeB }), false);
      await check(problem(7, 33, 5, transA, transB, { batchDims: [3], dtypeB, bias: true }), false);
      await check(problem(7, 33, 5, transA, transB, { batchDims: [2, 3], sharedB: true, dtypeB }), false);
      await check(problem(33, 13, 7, transA, transB, { dtypeA: dtypeB === 'f16' ? 'bf16' : 'f16', dtypeB }), false);
    }
});

test('gradients through a frozen bf16 B: dA (read from the 16-bit storage) and dbias in all forms, no dB', async () => {
  await initGpu();
  // With transA, dA = op(B)·dCᵀ puts the bf16 B in the kernel's A slot.
  for (const [transA, transB] of FORMS) {
    await check(problem(7, 33, 130, transA, transB, { bias: true, dtypeB: 'bf16' }), true);
    await check(problem(7, 13, 5, transA, transB, { batchDims: [3], sharedB: true, dtypeB: 'bf16' }), true);
  }
});

test('every tile variant is exact at a shape spanning several tiles with ragged edges', async () => {
  await initGpu();
  // Transposes only change the tile loads, which every form tests on the default tile: one form per variant.
  for (const [i, [name, tile]] of Object.entries(MATMUL_TILES).entries()) {
    const [transA, transB] = FORMS[i % FORMS.length];
    const p = problem(70, 135, 37, transA, transB, { batchDims: [2], bias: true });
    const { A, B, bias } = inputsOf(p, 3);
    const [a, b, biasT] = [upload(A, shapeA(p)), upload(B, shapeB(p)), upload(bias!, [p.N])];
    const out = Tensor.empty([2, p.M, p.N]);
    const s = { batch: 2, M: p.M, N: p.N, K: p.K, strideA: p.M * p.K, strideB: p.K * p.N, transA, transB, hasBias: true, dtypeA: 'f32', dtypeB: 'f32' } as const;
    launch(matmulCall(deviceLimits(), s, tile), [a, b, biasT, null], [out]);
    assertClose(await download(out), refMatmul(p, A, B, bias), 1e-5, `tile ${name} ${describe(p)}`);
    for (const t of [a, b, biasT, out]) t.dispose();
  }
  assert.throws(() => checkTile(deviceLimits(), { tileM: 64, tileN: 64, tileK: 16, threadM: 16, threadN: 4 }), /thread block exceeds/);
  assert.throws(() => checkTile(deviceLimits(), { tileM: 256, tileN: 256, tileK: 64, threadM: 8, threadN: 8 }), /workgroup memory/);
});

test('rows kernel (subgroups, quads): every form, bias, batched and shared, 16-bit operands, ragged M and N edges', async () => {
  await initGpu();
  const sub = subgroupDevice();
  const probe = { batch: 1, M: 8, N: 8, K: 8, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false, dtypeA: 'f32', dtypeB: 'f32' } as const;
  if (matmulRowsUnfit(deviceLimits(), sub, probe, MATMUL_ROWS_VARIANTS['rows 8x64/16'])) {
    console.log('  (rows kernel skipped: this device has no subgroups of 8 or more)');
    return;
  }
  // Ragged: M = 13 and 44 leave rows of the last workgroup empty, N = 36 and 140 columns of the last invocations;
  // K, M (with Aᵀ) and N (without Bᵀ) stay multiples of 4 as the kernel requires.
  const cases: Problem[] = [];
  for (const [transA, transB] of FORMS) {
    const M = transA ? 44 : 13;
    for (const [N, K] of [[36, 4], [140, 68]]) cases.push(problem(M, N, K, transA, transB));
    cases.push(problem(M, 36, 20, transA, transB, { batchDims: [3], bias: true }));
    cases.push(problem(M, 36, 20, transA, transB, { batchDims: [3], sharedA: true }));
    cases.push(problem(M, 36, 20, transA, transB, { batchDims: [2], sharedB: true, bias: true }));
    for (const dtypeB of ['f16', 'bf16'] as const) {
      cases.push(problem(M, 36, 20, transA, transB, { dtypeB, batchDims: [3] }));
      cases.push(problem(M, 140, 68, transA, transB, { dtypeA: dtypeB === 'f16' ? 'bf16' : 'f16', dtypeB, bias: true }));
    }
  }
  for (const [i, p] of cases.entries()) {
    const [name, variant] = Object.entries(MATMUL_ROWS_VARIANTS)[i % Object.keys(MATMUL_ROWS_VARIANTS).length];
    const { A, B, bias } = inputsOf(p, 61 + i);
    const a = uploadAs(A, shapeA(p), p.dtypeA, false), b = uploadAs(B, shapeB(p), p.dtypeB, false);
    const biasT = bias ? upload(bias, [p.N]) : null;
    const out = Tensor.empty([batchOf(p), p.M, p.N]);
    const s = { batch: batchOf(p), M: p.M, N: p.N, K: p.K, strideA: p.sharedA ? 0 : p.M * p.K, strideB: p.sharedB ? 0 : p.K * p.N,
      transA: p.transA, transB: p.transB, hasBias: p.bias, dtypeA: p.dtypeA, dtypeB: p.dtypeB };
    launch(matmulRowsCall(deviceLimits(), sub, s, variant), [a, b, biasT, null], [out]);
    assertClose(await download(out), refMatmul(p, await download(a), await download(b), bias), 1e-5, `rows ${name} ${describe(p)}`);
    for (const t of [a, b, biasT, out]) t?.dispose();
  }
  // Shapes it cannot take fall back to a tile; the table keeps it for the CPU only.
  assert.match(matmulRowsUnfit(deviceLimits(), sub, { ...probe, K: 6 }, MATMUL_ROWS_VARIANTS['rows 8x64/16'])!, /multiples of 4/);
  assert.match(matmulRowsUnfit(deviceLimits(), sub, { ...probe, transA: true, M: 6 }, MATMUL_ROWS_VARIANTS['rows 8x64/16'])!, /M a multiple of 4/);
  assert.match(matmulRowsUnfit(deviceLimits(), { ...sub, subgroupMinSize: 4 }, probe, MATMUL_ROWS_VARIANTS['rows 8x64/16'])!, /subgroups of at least 8/);
  assert.is(chosenMatmulCall(MATMUL_TABLE, 'lavapipe', deviceLimits(), sub, probe).kernel, matmulRowsCall(deviceLimits(), sub, probe).kernel);
  assert.is(chosenMatmulCall(MATMUL_TABLE, 'lavapipe', deviceLimits(), sub, { ...probe, K: 6 }).kernel, matmulKernel);
  assert.equal(chosenMatmulCall(MATMUL_TABLE, 'nvidia', deviceLimits(), sub, probe).constants!.TILE_M, 32);
  assert.equal(chosenMatmulCall(MATMUL_TABLE, 'nvidia', deviceLimits(), sub, { ...probe, M: 4096, N: 4096, K: 4096 }).constants!.TILE_M, 128);
  // A product with an epilogue (a bias, a residual or an activation in its store) takes the bucket's rowsEpilogue where it has one.
  const epilogueTable = { ...MATMUL_TABLE, lavapipe: [{ maxMNK: null, tile: '64x64x32/8x8', rows: 'rows 16x64/16', rowsEpilogue: 'rows 8x64/16' }] } as MatmulTable;
  const groupsOf = (s: MatmulShape, table = epilogueTable) => chosenMatmulCall(table, 'lavapipe', deviceLimits(), sub, s).constants!.ROW_GROUPS;
  assert.equal([groupsOf(probe), groupsOf({ ...probe, hasBias: true }), groupsOf({ ...probe, hasResidual: true }), groupsOf({ ...probe, activation: 'gelu' })], [2, 1, 1, 1]);
  assert.is(groupsOf({ ...probe, hasBias: true }, { ...epilogueTable, lavapipe: [{ maxMNK: null, tile: '64x64x32/8x8', rows: 'rows 16x64/16' }] }), 2);
});

test('rows kernel sources declare the bindings the spec states', () => {
  for (const k of matmulRowsKernels) {
    const src = k.source.replace(/\/\/.*$/gm, '');
    const bound = [...src.matchAll(/@binding\((\d+)\) var<[^>]+> (\w+)/g)].sort((x, y) => Number(x[1]) - Number(y[1])).map((m) => m[2]);
    assert.equal(bound, [...k.inputs, ...k.outputs, 'params'].filter((n) => !(k.absent ?? []).includes(n)));
    for (const c of k.constants!) assert.match(src, new RegExp(`override ${c}: `));
  }
});

/** Launches call on p's operands (and bias), compares with float64; the residual, when given, is added to C. */
async function checkCall(p: Problem, call: KernelCall, what: string, seed: number, residual = false): Promise<void> {
  const { A, B, bias } = inputsOf(p, seed);
  const a = upload(A, shapeA(p)), b = upload(B, shapeB(p));
  const biasT = bias ? upload(bias, [p.N]) : null;
  const R = residual ? randn(batchOf(p) * p.M * p.N, seed + 5) : null;
  const residualT = R ? upload(R, [batchOf(p), p.M, p.N]) : null;
  const out = Tensor.empty([batchOf(p), p.M, p.N]);
  launch(call, [a, b, biasT, residualT], [out]);
  const ref = refMatmul(p, A, B, bias);
  if (R) for (let i = 0; i < ref.length; i++) ref[i] += R[i];
  assertClose(await download(out), ref, 1e-5, `${what} ${describe(p)}${residual ? ' +residual' : ''}`);
  for (const t of [a, b, biasT, residualT, out]) t?.dispose();
}

/** The kernel's shape of a problem: batch strides from its shared operands. */
const shapeOf = (p: Problem): MatmulShape => ({ batch: batchOf(p), M: p.M, N: p.N, K: p.K, strideA: p.sharedA ? 0 : p.M * p.K,
  strideB: p.sharedB ? 0 : p.K * p.N, transA: p.transA, transB: p.transB, hasBias: p.bias, dtypeA: p.dtypeA, dtypeB: p.dtypeB });

test('vec4 kernel: every variant in two of the four forms (each operand staged both ways), ragged edges, batched, broadcast, bias', async () => {
  await initGpu();
  const base = pool.liveBytes;
  // Each operand's stored rows are whole vec4s (K for A, M for Aᵀ, N for B, K for Bᵀ: multiples of 4); the other
  // sizes are ragged: M 70 and N 135 end inside a tile, K 37 (Aᵀ·B, the one form with K along no stored row) and
  // K 68 (5 k tiles of 16: both staging buffers, the last one partly zero) end inside a k tile, K 4 is under one.
  // A·B with Aᵀ·Bᵀ, or A·Bᵀ with Aᵀ·B: each variant transposes each operand as it stages it in one of its two forms.
  for (const [i, [name, v]] of Object.entries(MATMUL_VEC4_VARIANTS).entries())
    for (const f of [i % 4, 3 - (i % 4)]) {
      const [transA, transB] = FORMS[f];
      const M = transA ? 68 : 70, N = transB ? 135 : 132, K = transA && !transB ? 37 : [68, 36, 4][(i + f) % 3];
      const shared = [{}, { sharedA: true }, { sharedB: true }][(i + f) % 3];
      const p = problem(M, N, K, transA, transB, { batchDims: [2], bias: (i + f) % 2 === 0, ...shared });
      await checkCall(p, matmulVec4Call(deviceLimits(), shapeOf(p), v), name, 71 + 4 * i + f);
    }
  // Bias and residual together (the residual is C's shape), one tile a workgroup.
  const p = problem(16, 12, 8, false, true, { batchDims: [3], sharedB: true, bias: true });
  await checkCall(p, matmulVec4Call(deviceLimits(), { ...shapeOf(p), hasResidual: true }, MATMUL_VEC4_VARIANTS['vec4 32x32x16/4x4']), 'vec4 32x32x16/4x4', 99, true);
  // The whole epilogue, GELU included, against the tiled kernel's, which stores through the same includes.
  const q = problem(36, 40, 20, true, false, { batchDims: [2], bias: true });
  const { A, B, bias } = inputsOf(q, 101);
  const s: MatmulShape = { ...shapeOf(q), hasResidual: true, activation: 'gelu' };
  const ins = [upload(A, shapeA(q)), upload(B, shapeB(q)), upload(bias!, [q.N]), upload(randn(2 * q.M * q.N, 102), [2, q.M, q.N])];
  const [ours, theirs] = [Tensor.empty([2, q.M, q.N]), Tensor.empty([2, q.M, q.N])];
  launch(matmulVec4Call(deviceLimits(), s, MATMUL_VEC4_VARIANTS['vec4 256x128x8/16x8']), ins, [ours]);
  launch(matmulCall(deviceLimits(), s), ins, [theirs]);
  assertClose(await download(ours), await download(theirs), 1e-6, 'vec4 bias, GELU and residual vs the tiled kernel');
  for (const t of [...ins, ours, theirs]) t.dispose();
  assert.is(pool.liveBytes, base);
});

test('vec4 kernel refuses, with the reason, what it cannot read; the table picks it first where it fits', async () => {
  await initGpu();
  const limits = deviceLimits();
  const v = MATMUL_VEC4_VARIANTS['vec4 128x128x8/8x8'];
  const s: MatmulShape = { batch: 1, M: 64, N: 64, K: 64, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false, dtypeA: 'f32', dtypeB: 'f32' };
  assert.is(matmulVec4Unfit(limits, s, v), null);
  assert.match(matmulVec4Unfit(limits, { ...s, K: 66 }, v)!, /A stored M×K needs K a multiple of 4/);
  assert.match(matmulVec4Unfit(limits, { ...s, transA: true, M: 66 }, v)!, /transposed A \(stored K×M\) needs M a multiple of 4/);
  assert.is(matmulVec4Unfit(limits, { ...s, transA: true, K: 66 }, v), null, 'Aᵀ·B reads no row along K');
  assert.match(matmulVec4Unfit(limits, { ...s, N: 66 }, v)!, /B stored K×N needs N a multiple of 4/);
  assert.match(matmulVec4Unfit(limits, { ...s, transA: true, transB: true, K: 66 }, v)!, /B stored N×K needs K a multiple of 4/);
  assert.match(matmulVec4Unfit(limits, { ...s, batch: 2, strideA: 6 }, v)!, /batch strides must be multiples of 4/);
  assert.match(matmulVec4Unfit(limits, { ...s, dtypeB: 'bf16' }, v)!, /f32 only \(the tiled kernel takes 16-bit ones\)/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, tileK: 32 })!, /65536 bytes of workgroup memory \(two staging buffers\) exceed maxComputeWorkgroupStorageSize/);
  assert.match(matmulVec4Unfit({ ...limits, maxComputeWorkgroupStorageSize: 16384 }, s, MATMUL_VEC4_VARIANTS['vec4 128x128x16/8x8'])!, /32768 bytes of workgroup memory \(two staging buffers\) exceed maxComputeWorkgroupStorageSize 16384/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, threadM: 2 } as unknown as MatmulVec4Variant)!, /4, 8 or 16 rows and columns/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, threadM: 16, threadN: 16 })!, /128 outputs at most/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, tileM: 80 })!, /TILE_M and TILE_N multiples of 32/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, warpX: 12 })!, /warps of 12 × .* do not tile the workgroup 16×16/);
  assert.match(matmulVec4Unfit(limits, s, { ...v, tileK: 64 })!, /8 global vec4 loads per thread and k tile exceed 4/);
  assert.throws(() => matmulVec4Call(limits, { ...s, K: 66 }, v), /matmul vec4 .*K a multiple of 4/);
  assert.equal([...matmulVec4PlainKernel.inputs], [...MATMUL_INPUTS], 'the bindings of every matmul kernel');
  // A table whose bucket names a vec4 variant runs it where it fits, else the bucket's rows or tile.
  const sub = subgroupDevice();
  const table = { ...MATMUL_TABLE, other: [{ maxMNK: null, tile: '32x32x16/4x4', vec4: 'vec4 64x64x16/8x8' }] } as MatmulTable;
  assert.is(chosenMatmulCall(table, 'other', limits, sub, s).kernel, matmulVec4PlainKernel);
  assert.equal(chosenMatmulCall(table, 'other', limits, sub, s).constants!.TILE_M, 64);
  assert.is(chosenMatmulCall(table, 'other', limits, sub, { ...s, K: 66 }).kernel, matmulKernel);
  assert.is(chosenMatmulCall(table, 'other', limits, sub, { ...s, dtypeB: 'bf16' }).kernel, matmulKernel);
  const p = problem(40, 36, 20, true, true, { bias: true });
  await checkCall(p, chosenMatmulCall(table, 'other', limits, sub, shapeOf(p)), 'table vec4 64x64x16/8x8', 81);
});

/** The ledger's op names since the last reset. */
const opsRun = () => ledger.byOp().map((r) => r.key);

test('linear with 1..8 rows runs matmulSmallM: M 1, 2, 3, 8 by K up to 4096 by N up to 1000, every weight format, ± bias', async () => {
  await initGpu();
  const base = pool.liveBytes;
  // Odd K starts every other 16-bit weight row in the middle of a word; K = 1 and 7 leave most threads without work.
  for (const K of [1, 7, 130, 4096])
    for (const N of [1, 33, 1000]) {
      const weightValues = randn(N * K, K + N);
      const bias = randn(N, 2);
      const biasT = upload(bias, [N]);
      for (const dtypeB of ['f32', 'f16', 'bf16'] as const) {
        const w = uploadAs(weightValues, [N, K], dtypeB, false);
        const W = await download(w);
        for (const M of [1, 2, 3, 8]) {
          const X = randn(M * K, M);
          const x = upload(X, [M, K]);
          for (const withBias of [false, true]) {
            const p = problem(M, N, K, false, true, { bias: withBias, dtypeB });
            ledger.reset();
            const y = linear(x, w, withBias ? biasT : undefined);
            assert.equal(opsRun(), ['matmulSmallM'], describe(p));
            assertClose(await download(y), refMatmul(p, X, W, withBias ? bias : null), 1e-5, describe(p));
            y.dispose();
          }
          x.dispose();
        }
        w.dispose();
      }
      biasT.dispose();
    }
  assert.is(pool.liveBytes, base);
});

test('every small-M variant is exact where columns and threads have ragged ends', async () => {
  await initGpu();
  // N = 37 leaves a workgroup with fewer columns than it owns; K = 131 is odd (16-bit rows start mid-word).
  for (const [i, [name, variant]] of Object.entries(SMALL_M_VARIANTS).entries()) {
    const dtypeB = (['f32', 'f16', 'bf16'] as const)[i % 3];
    const p = problem(5, 37, 131, false, true, { bias: true, dtypeB });
    const { A: X, B, bias } = inputsOf(p, 41);
    const [x, w, biasT] = [upload(X, [p.M, p.K]), uploadAs(B, [p.N, p.K], dtypeB, false), upload(bias!, [p.N])];
    const out = Tensor.empty([p.M, p.N]);
    const s = { batch: 1, M: p.M, N: p.N, K: p.K, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: true, dtypeA: 'f32', dtypeB } as const;
    launch(matmulSmallMCall(deviceLimits(), s, variant), [x, w, biasT, null], [out]);
    assertClose(await download(out), refMatmul(p, X, await download(w), bias), 1e-5, `small-M ${name} ${describe(p)}`);
    for (const t of [x, w, biasT, out]) t.dispose();
  }
  const s = { batch: 1, M: 9, N: 4, K: 4, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: false, dtypeA: 'f32', dtypeB: 'f32' } as const;
  assert.throws(() => matmulSmallMCall(deviceLimits(), s, SMALL_M_VARIANTS['4x64']), /not one f32 x of 1\.\.8 rows/);
  assert.throws(() => matmulSmallMCall(deviceLimits(), { ...s, M: 8 }, { columns: SMALL_M_MAX_COLUMNS + 1, threads: 64 }), /columns must be/);
});

test('small-M rows in power-of-two buckets (1, 2, 4, 8 compiled): each row the bits it gets alone, the rows past M unstored', async () => {
  await initGpu();
  const [N, K] = [13, 70];
  for (const name of ['4x8', '8x8'] as const) { // 8 threads whatever the rows: the same tree in every bucket
    const variant = SMALL_M_VARIANTS[name];
    const p = problem(8, N, K, false, true, { bias: true });
    const { A: X, B, bias } = inputsOf(p, 77);
    const residual = randn(8 * N, 78);
    const [w, biasT] = [upload(B, [N, K]), upload(bias!, [N])];
    const bits = (v: Float64Array) => [...new Uint32Array(Float32Array.from(v).buffer)];
    // Rows [first, first + M) of x and of the residual; out has a row more, filled with 7s.
    const run = async (first: number, M: number) => {
      const [x, res, out] = [upload(X.subarray(first * K, (first + M) * K), [M, K]), upload(residual.subarray(first * N, (first + M) * N), [M, N]), upload(new Float64Array((M + 1) * N).fill(7), [M + 1, N])];
      const s = { batch: 1, M, N, K, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: true, hasResidual: true, dtypeA: 'f32', dtypeB: 'f32' } as const;
      const call = matmulSmallMCall(deviceLimits(), s, variant);
      launch(call, [x, w, biasT, res], [out]);
      const values = await download(out);
      for (const t of [x, res, out]) t.dispose();
      return { values, rows: call.constants!.ROWS };
    };
    const buckets: number[] = [];
    for (let M = 1; M <= 8; M++) {
      const together = await run(0, M);
      buckets.push(together.rows);
      assert.equal([...together.values.subarray(M * N)], new Array(N).fill(7), `${name} M ${M}: nothing stored past row M`);
      const ref = refMatmul({ ...p, M }, X.subarray(0, M * K), B, bias).map((v, i) => v + residual[i]);
      assertClose(together.values.subarray(0, M * N), ref, 1e-5, `${name} M ${M}`);
      for (let m = 0; m < M; m++) {
        const alone = await run(m, 1);
        assert.equal(bits(together.values.subarray(m * N, (m + 1) * N)), bits(alone.values.subarray(0, N)), `${name} M ${M} row ${m}: the bits it gets alone`);
      }
    }
    assert.equal(buckets, [1, 2, 4, 4, 8, 8, 8, 8], `${name}: the buckets compiled`);
    for (const t of [w, biasT]) t.dispose();
  }
});

test('kernel choice: matmulSmallM for up to 8 rows of f32 times a transposed weight, the tiled matmul otherwise', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const [N, K] = [33, 130];
  const opsOf = (fn: () => Tensor) => tidy(() => { ledger.reset(); fn(); return opsRun(); });
  tidy(() => {
    const w = upload(randn(N * K, 51), [N, K]);
    const rows = (lead: number[]) => upload(randn(numelOf(lead) * K, 52), [...lead, K]);
    assert.equal(opsOf(() => linear(rows([8]), w)), ['matmulSmallM']);
    assert.equal(opsOf(() => linear(rows([2, 4]), w)), ['matmulSmallM'], 'batch dims stack into the rows');
    assert.equal(opsOf(() => matmul(rows([2, 3]), w, { transB: true })), ['matmulSmallM'], 'a weight shared over the batch');
    assert.equal(opsOf(() => linear(rows([9]), w)), ['matmul'], '9 rows');
    assert.equal(opsOf(() => matmul(rows([3]), upload(randn(K * N, 53), [K, N]))), ['matmul'], 'B not transposed');
    assert.equal(opsOf(() => matmul(rows([2, 3]), upload(randn(2 * N * K, 54), [2, N, K]), { transB: true })), ['matmul'], 'one B per batch entry');
    const x16 = uploadAs(randn(3 * K, 55), [3, K], 'f16', false);
    assert.equal(opsOf(() => linear(x16, w)), ['matmul'], '16-bit x');
  });
  // The variant is the table's, per device class: one row and 2..8 rows may differ; a name it lacks is refused.
  for (const device of MATMUL_DEVICE_CLASSES)
    for (const M of [1, 2, 8]) {
      const name = M === 1 ? MATMUL_TABLE.smallM[device].oneRow : MATMUL_TABLE.smallM[device].fewRows;
      assert.is(smallMVariantFor(MATMUL_TABLE, device, M), SMALL_M_VARIANTS[name as keyof typeof SMALL_M_VARIANTS], `${device} M=${M}`);
    }
  const unknown = { ...MATMUL_TABLE, smallM: { ...MATMUL_TABLE.smallM, other: { oneRow: '3x3', fewRows: '2x256' } } };
  assert.throws(() => smallMVariantFor(unknown, 'other', 1), /small-M variant '3x3' for other is none of/);
  // The cost: a bf16 weight read once at 2 bytes per element, x and bias once; the backward keeps the tiled kernel.
  const [M, N2, K2] = [3, 1000, 130];
  const x = upload(randn(M * K2, 56), [M, K2], true);
  const w = Tensor.zeros([N2, K2], 'bf16');
  const bias = upload(randn(N2, 57), [N2], true);
  ledger.reset();
  const y = linear(x, w, bias);
  const forward = ledger.byOp().find((r) => r.key === 'matmulSmallM')!;
  assert.equal([forward.flops, forward.bytesRead, forward.bytesWritten, forward.dispatches],
    [2 * M * N2 * K2 + M * N2, 2 * N2 * K2 + 4 * M * K2 + 4 * N2, 4 * M * N2, 1]);
  const seed = upload(randn(M * N2, 58), [M, N2]);
  ledger.reset();
  backward(y, seed);
  assert.equal(opsRun(), ['matmulBackward']);
  await download(x.grad!);
  for (const t of [x, w, bias, y, seed]) { t.grad?.dispose(); t.dispose(); }
  assert.is(pool.liveBytes, base);
});

test('linear: x [2, 3, 7] and x [7] times weight [5, 7]ᵀ plus bias, with gradients', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const lead of [[2, 3], []]) {
    const rows = numelOf(lead);
    const p = problem(rows, 5, 7, false, true, { bias: true });
    const { A: X, B: W, bias } = inputsOf(p, 11);
    const x = upload(X, [...lead, 7], true);
    const w = upload(W, [5, 7], true);
    const b = upload(bias!, [5], true);
    const y = linear(x, w, b);
    assert.equal(y.shape, [...lead, 5]);
    assertClose(await download(y), refMatmul(p, X, W, bias), 1e-5, `linear forward [${lead}]`);
    const seedData = randn(y.numel, 12);
    const seed = upload(seedData, [...y.shape]);
    backward(y, seed);
    const ref = refMatmulGrads(p, X, W, seedData);
    assertClose(await download(x.grad!), ref.gA, 1e-4, `linear dx [${lead}]`);
    assertClose(await download(w.grad!), ref.gB, 1e-4, 'linear dweight');
    assertClose(await download(b.grad!), ref.gBias, 1e-4, 'linear dbias');
    for (const t of [x, w, b, y, seed]) { t.grad?.dispose(); t.dispose(); }
  }
  assert.is(pool.liveBytes, base);
});

test('linear through a frozen bf16 weight: forward and dx; requiresGrad on a 16-bit tensor is refused', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const p = problem(6, 5, 7, false, true, { bias: true, dtypeB: 'bf16' });
  const inputs = inputsOf(p, 31);
  const x = upload(inputs.A, [2, 3, 7], true);
  const w = uploadAs(inputs.B, [5, 7], 'bf16', false);
  const b = upload(inputs.bias!, [5], true);
  const W = await download(w);
  const y = linear(x, w, b);
  assertClose(await download(y), refMatmul(p, inputs.A, W, inputs.bias), 1e-5, 'linear forward, bf16 weight');
  const seedData = randn(y.numel, 32);
  const seed = upload(seedData, [...y.shape]);
  backward(y, seed);
  const ref = refMatmulGrads(p, inputs.A, W, seedData);
  assertClose(await download(x.grad!), ref.gA, 1e-4, 'linear dx through a bf16 weight');
  assertClose(await download(b.grad!), ref.gBias, 1e-4, 'linear dbias, bf16 weight');
  assert.is(w.grad, null);
  w.requiresGrad = true;
  assert.throws(() => linear(x, w, b), /\[5, 7\] is bf16 with requiresGrad set; 16-bit tensors are frozen/);
  tidy(() => {
    const a16 = uploadAs(inputs.A, [6, 7], 'f16', false);
    a16.requiresGrad = true;
    assert.throws(() => matmul(a16, Tensor.zeros([7, 2])), /\[6, 7\] is f16 with requiresGrad set/);
    assert.throws(() => matmul(Tensor.zeros([1, 6], 'i32'), a16), /operands must be f32, f16 or bf16, got i32/);
  });
  for (const t of [x, w, b, y, seed]) { t.grad?.dispose(); t.dispose(); }
  assert.is(pool.liveBytes, base);
});

test('ledger: forward charges 2·M·N·K flops to matmul, backward 4·M·N·K to matmulBackward', async () => {
  await initGpu();
  const [M, N, K] = [7, 33, 130];
  for (const batch of [1, 3]) {
    // With a batch, b is shared: its gradient must come from one product over the stacked rows, not a reduction.
    const a = upload(randn(batch * M * K, 21), batch === 1 ? [M, K] : [batch, M, K], true);
    const b = upload(randn(K * N, 22), [K, N], true);
    ledger.reset();
    const out = matmul(a, b);
    const forward = ledger.byOp().find((r) => r.key === 'matmul')!;
    assert.equal([forward.flops, forward.bytesRead, forward.bytesWritten, forward.dispatches],
      [2 * batch * M * N * K, 4 * (batch * M * K + K * N), 4 * batch * M * N, 1]);
    const seed = upload(randn(batch * M * N, 23), [...out.shape]);
    ledger.reset();
    backward(out, seed);
    const back = ledger.byOp().find((r) => r.key === 'matmulBackward')!;
    assert.equal([back.flops, back.dispatches], [4 * batch * M * N * K, 2]);
    await download(a.grad!);
    for (const t of [a, b, out, seed]) { t.grad?.dispose(); t.dispose(); }
  }
  // A 16-bit B is read at 2 bytes per element.
  tidy(() => {
    const a = upload(randn(M * K, 24), [M, K]);
    const b16 = Tensor.zeros([K, N], 'bf16');
    ledger.reset();
    matmul(a, b16);
    const forward = ledger.byOp().find((r) => r.key === 'matmul')!;
    assert.equal([forward.flops, forward.bytesRead, forward.bytesWritten], [2 * M * N * K, 4 * M * K + 2 * K * N, 4 * M * N]);
  });
});

test('shape errors name the operands', async () => {
  await initGpu();
  const base = pool.liveBytes;
  tidy(() => {
    const a = Tensor.zeros([2, 3, 4]);
    assert.throws(() => matmul(a, Tensor.zeros([3, 5, 6])), /inner dims 4 and 5 differ/);
    assert.throws(() => matmul(a, Tensor.zeros([3, 4, 6])), /do not broadcast/);
    assert.throws(() => matmul(a, Tensor.zeros([4, 6]), { bias: Tensor.zeros([5]) }), /bias \[5\] should be \[6\]/);
    assert.throws(() => linear(a, Tensor.zeros([6, 5])), /expected x \[\.\.\., in\] and weight \[out, in\]/);
  });
  assert.is(pool.liveBytes, base);
});

test.run();
