// The tensor-core matmul (kernels/matmul_tensor_core.*) against a float64 reference on the same f16 values and
// against the tiled f32 kernel: its shader, its logic through the emulated subgroup matrices (any device,
// lavapipe included) in all four transpose forms, ragged, batched, broadcast and with a bias, the real subgroup
// matrices for every shape the device has (skipped, with a line, where it has none), and the engine's choice.
//
// Tolerances: the operands are f16 values, so every product is exact in f32 and only the f32 sums round: about
// 1e-7 relative over these K (the tiled kernel's 1e-5 holds). The tensor cores may sum in another order and, on
// some GPUs, truncate inside the accumulation: 1e-3 there.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from '../../engine/gpu.ts';
import { launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { matmul } from '../../engine/ops/matmul.ts';
import { subgroupMatrixDevice } from '../../engine/ops/attention.ts';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import type { MatmulShape } from '../../kernels/matmul.ts';
import { tensorCoreDeviceUnsupported, tensorCoreShapes, type MatrixShape } from '../../kernels/attention_forward_tensor_core.ts';
import {
  matmulTensorCoreCall, matmulTensorCoreKernel, matmulTensorCoreSampleKernel, matmulTensorCoreVariant, planMatmulTensorCore,
  type MatmulTensorCoreVariant,
} from '../../kernels/matmul_tensor_core.ts';
import { assertClose, download, initGpu, randn } from '../support/util.ts';
import { emulate, emulatedMatmulTensorCoreCall } from '../support/subgroup_matrix_emulation.ts';

const EMULATED_TOL = 1e-5;
const TENSOR_CORE_TOL = 1e-3;

/** op(A) M×K, op(B) K×N per batch entry; sharedB: one B for every entry (stride 0). */
interface Case { batch: number; M: number; N: number; K: number; transA: boolean; transB: boolean; bias?: boolean; sharedB?: boolean }

const label = (c: Case) => `${c.batch > 1 ? `batch ${c.batch}${c.sharedB ? ' shared B' : ''} ` : ''}M${c.M} N${c.N} K${c.K}${c.transA ? ' Aᵀ' : ''}${c.transB ? ' Bᵀ' : ''}${c.bias ? ' +bias' : ''}`;

function shapeOf(c: Case): MatmulShape {
  return {
    batch: c.batch, M: c.M, N: c.N, K: c.K, strideA: c.M * c.K, strideB: c.sharedB ? 0 : c.K * c.N,
    transA: c.transA, transB: c.transB, hasBias: c.bias ?? false, dtypeA: 'f16', dtypeB: 'f16',
  };
}

/** float64 C[b] = op(A[b]) op(B[b]) + bias from the stored values (A, B as laid out by the transposes). */
function reference(c: Case, A: Float64Array, B: Float64Array, bias: Float64Array | null): Float64Array {
  const C = new Float64Array(c.batch * c.M * c.N);
  for (let b = 0; b < c.batch; b++) {
    const a0 = b * c.M * c.K, b0 = c.sharedB ? 0 : b * c.K * c.N;
    for (let m = 0; m < c.M; m++)
      for (let n = 0; n < c.N; n++) {
        let s = bias ? bias[n]! : 0;
        for (let k = 0; k < c.K; k++) s += A[a0 + (c.transA ? k * c.M + m : m * c.K + k)]! * B[b0 + (c.transB ? n * c.K + k : k * c.N + n)]!;
        C[(b * c.M + m) * c.N + n] = s;
      }
  }
  return C;
}

let seed = 1;
/** f16 A and B (and an f32 bias) of the case, and their values as stored. */
async function operands(c: Case) {
  const a = Tensor.fromArray(randn(c.batch * c.M * c.K, seed++), c.transA ? [c.batch, c.K, c.M] : [c.batch, c.M, c.K], 'f16');
  const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
  const b = Tensor.fromArray(randn((c.sharedB ? 1 : c.batch) * c.K * c.N, seed++), c.sharedB ? bShape : [c.batch, ...bShape], 'f16');
  const bias = c.bias ? Tensor.fromArray(randn(c.N, seed++), [c.N]) : null;
  return { a, b, bias, A: await download(a), B: await download(b), biasValues: bias ? await download(bias) : null };
}

/** Runs one call on the case's operands into C and compares it with float64. */
async function check(c: Case, tol: number, what: string, call: (s: MatmulShape) => Parameters<typeof launch>[0]): Promise<void> {
  await tidyAsync(async () => {
    const x = await operands(c);
    const out = Tensor.empty([c.batch, c.M, c.N]);
    launch(call(shapeOf(c)), [x.a, x.b, x.bias, null], [out]);
    assertClose(await download(out), reference(c, x.A, x.B, x.biasValues), tol, `${what} ${label(c)}`);
  });
}

const FORMS = [[false, false], [false, true], [true, false], [true, true]] as const;
const M16N16K16: MatrixShape = { M: 16, N: 16, K: 16 };
const H100 = { subgroupSize: 32, maxWorkgroupBytes: 49152, maxInvocations: 1024 };

test('the shader: directives first, the matrix types, the template builtin form, and an emulation with none left', () => {
  const src = matmulTensorCoreSampleKernel.source;
  assert.ok(src.startsWith('enable f16;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);\n'));
  assert.match(src, /alias Left = subgroup_matrix_left<f16, 16, 16>;/);
  assert.match(src, /alias Acc = subgroup_matrix_result<f32, 16, 16>;/);
  assert.match(src, /const WM = 4u;/);
  // The template form this Dawn accepts; the older form with a boolean column-major argument does not compile.
  assert.not.match(src.replace(/\/\/[^\n]*/g, ''), /subgroupMatrix(Load|Store)\([^)]*(true|false)/);
  const variant = planMatmulTensorCore(4096, 4096, { M: 16, N: 8, K: 16 }, H100).variant!;
  const n8 = matmulTensorCoreKernel(variant, true).source;
  assert.match(n8, /alias Right = subgroup_matrix_right<f16, 8, 16>;/);
  const emulated = emulate(n8, variant);
  assert.not.match(emulated.replace(/\/\/[^\n]*/g, ''), /subgroupMatrix|subgroup_matrix/);
  assert.match(emulated, /fn emulatedLoad_Left_aTile\(/);
  assert.match(emulated, /fn emulatedStore_cTile\(/);
});

test('plan and call: the largest tile for 4096^3 on an H100, smaller ones for small products, f16 operands only', () => {
  const s: MatmulShape = { batch: 1, M: 4096, N: 4096, K: 4096, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false, dtypeA: 'f16', dtypeB: 'f16' };
  const v = planMatmulTensorCore(4096, 4096, M16N16K16, H100).variant!;
  assert.equal(v, { shape: M16N16K16, subgroupSize: 32, subgroupRows: 2, subgroupCols: 2, matrixRows: 4, matrixCols: 4 });
  const call = matmulTensorCoreCall(s, v);
  assert.equal(call.workgroups, [32, 32, 1]);
  assert.is(call.cost.flops, 2 * 4096 ** 3);
  assert.is(call.cost.bytesRead, 2 * 2 * 4096 ** 2);
  assert.is(call.cost.bytesWritten, 4 * 4096 ** 2);
  assert.equal(call.constants, { TRANS_A: 0, TRANS_B: 0 });
  assert.is(planMatmulTensorCore(40, 50, M16N16K16, H100).variant?.matrixRows, 2); // 32x32 tiles, not 128x128
  assert.is(planMatmulTensorCore(3, 5, M16N16K16, H100).variant?.matrixRows, 1); // one matrix
  assert.throws(() => matmulTensorCoreCall({ ...s, dtypeB: 'bf16' }, v), /subgroup matrices take f16 operands/);
});

// Ragged in every dim (not multiples of the matrices or tiles), K not a multiple of the K step, odd sizes that
// put word pairs across rows, a bias, batches with their own B and with one shared B.
const cases: Case[] = [
  ...FORMS.map(([transA, transB]) => ({ batch: 1, M: 37, N: 45, K: 70, transA, transB })),
  ...FORMS.map(([transA, transB]) => ({ batch: 2, M: 19, N: 23, K: 33, transA, transB, bias: true })),
  { batch: 3, M: 24, N: 40, K: 64, transA: false, transB: true, sharedB: true },
  { batch: 1, M: 1, N: 9, K: 5, transA: true, transB: false, bias: true },
];

// On any device: the kernel's logic with emulated matrices, at subgroups of 8 and 32 lanes, three matrix shapes
// and every tile candidate (the largest forced on small products, so that most of its tiles are ragged).
test('emulated subgroup matrices equal float64 in all four transpose forms', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the tensor-core matmul is not tested'); return; }
  const { limits } = gpu();
  const device = (subgroupSize: number) => ({ subgroupSize, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxInvocations: limits.maxComputeInvocationsPerWorkgroup });
  const largest = (shape: MatrixShape, subgroupSize: number): MatmulTensorCoreVariant => ({ shape, subgroupSize, subgroupRows: 2, subgroupCols: 2, matrixRows: 4, matrixCols: 4 });
  const setups: { name: string; variant: (c: Case) => MatmulTensorCoreVariant }[] = [
    { name: 'M8N8K8 SG8 planned', variant: (c) => planMatmulTensorCore(c.M, c.N, { M: 8, N: 8, K: 8 }, device(8)).variant! },
    { name: 'M8N8K8 SG8 2x2 of 4x4', variant: () => largest({ M: 8, N: 8, K: 8 }, 8) },
    { name: 'M16N8K16 SG32 planned', variant: (c) => planMatmulTensorCore(c.M, c.N, { M: 16, N: 8, K: 16 }, device(32)).variant! },
    { name: 'M16N16K16 SG32 planned', variant: (c) => planMatmulTensorCore(c.M, c.N, M16N16K16, device(32)).variant! },
  ];
  for (const [i, c] of cases.entries()) {
    // Rotated once per group of four, so that each transpose form meets two setups.
    const setup = setups[(i + Math.floor(i / FORMS.length)) % setups.length]!;
    await check(c, EMULATED_TOL, `emulated ${setup.name}`, (s) => emulatedMatmulTensorCoreCall(s, setup.variant(c)));
  }
});

test('tensor cores equal float64 in all four transpose forms, for every matrix shape of the device', async () => {
  await initGpu();
  const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
  if (unsupported) { console.log(`tensor-core matmul not tested on this device: ${unsupported}`); return; }
  for (const shape of tensorCoreShapes(subgroupMatrixDevice())) {
    for (const c of [...cases, { batch: 1, M: 300, N: 260, K: 200, transA: false, transB: false }]) {
      await check(c, TENSOR_CORE_TOL, `tensor cores M${shape.M}N${shape.N}K${shape.K}`, (s) => matmulTensorCoreCall(s, matmulTensorCoreVariant(subgroupMatrixDevice(), s, shape).variant!));
    }
  }
});

test("matmul's choice: f16 operands take the tensor cores where the device has them, else the tiled kernel; 'tensorCore' refuses clearly", async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the f16 choice is not tested'); return; }
  const c: Case = { batch: 1, M: 33, N: 20, K: 48, transA: false, transB: true, bias: true };
  await tidyAsync(async () => {
    const x = await operands(c);
    const a = x.a.reshape([c.M, c.K]);
    const opts = { transB: true, bias: x.bias! };
    ledger.reset();
    const auto = matmul(a, x.b.reshape([c.N, c.K]), opts);
    const tiled = matmul(a, x.b.reshape([c.N, c.K]), { ...opts, variant: 'f32' });
    const ops = ledger.byOp().map((r) => r.key);
    const ref = reference(c, x.A, x.B, x.biasValues);
    assertClose(await download(tiled), ref, EMULATED_TOL, 'tiled kernel on f16 operands');
    const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
    if (unsupported) {
      assert.equal(ops, ['matmul'], 'auto fell back to the tiled kernel');
      assert.equal(await download(auto), await download(tiled));
      assert.throws(() => matmul(a, x.b.reshape([c.N, c.K]), { ...opts, variant: 'tensorCore' }), (e: Error) => e.message.includes(unsupported) && e.message.includes("variant 'f32' serves"));
    } else {
      assert.equal([...ops].sort(), ['matmul', 'matmulTensorCore']);
      assertClose(await download(auto), ref, TENSOR_CORE_TOL, 'auto on the tensor cores');
      // f32 and bf16 operands: auto keeps the tiled kernel, tensorCore refuses.
      const f32 = Tensor.fromArray(x.A, [c.M, c.K]);
      ledger.reset();
      matmul(f32, x.b.reshape([c.N, c.K]), { transB: true });
      assert.equal(ledger.byOp().map((r) => r.key), ['matmul']);
      const bf16 = Tensor.fromArray(x.A, [c.M, c.K], 'bf16');
      assert.throws(() => matmul(bf16, x.b.reshape([c.N, c.K]), { transB: true, variant: 'tensorCore' }), /operands are bf16 and f16: subgroup matrices take f16 operands/);
    }
  });
});

test.run();
