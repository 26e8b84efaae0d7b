// The tensor-core forward (kernels/attention_forward_tensor_core.*) against the f32 fused kernel on the same
// f16-rounded inputs: its tile plans (no GPU), its logic through the emulated subgroup matrices (any device,
// lavapipe included), the real subgroup matrices for every shape and key layout the device supports (skipped,
// with a line, where it has none), and the variant selection with its fallback.
//
// Tolerances: with the same f16 inputs, the scores are exact f16 products summed in f32 on both sides, so lse
// agrees to f32 rounding (measured about 4e-8 emulated); out differs because P is rounded to f16 before P V: each
// weight carries a relative error up to 2^-11 ≈ 4.9e-4 (RMS 2.8e-4 with round-to-nearest, a bias of up to 2^-11
// if the conversion truncates), so out's relative error stays near 3e-4 (1e-4 to 1.7e-4 measured emulated):
// 2e-3 leaves room for truncation and for the tensor cores' own accumulation order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from '../../engine/gpu.ts';
import { launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { attentionSetup, attentionTensorCore, attentionWithLse, subgroupMatrixDevice, type AttentionOptions } from '../../engine/ops/attention.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import { MAX_HEAD_DIM } from '../../kernels/attention_forward.ts';
import {
  attentionTensorCoreKernel, attentionTensorCoreSampleKernel, planTensorCore, tensorCoreDeviceUnsupported,
  tensorCoreLayout, tensorCoreShapes, type MatrixShape, type TensorCoreDevice,
} from '../../kernels/attention_forward_tensor_core.ts';
import { assertClose, download, initGpu, randn } from '../support/util.ts';
import { emulate, emulatedTensorCoreCall } from '../support/subgroup_matrix_emulation.ts';

const OUT_TOL = 2e-3;
const LSE_TOL = 1e-5;

interface Case { B: number; H: number; KVH: number; T: number; S?: number; D: number; causal?: boolean; window?: number; positionOffset?: number; keyRanges?: [number, number][]; scale?: number }

function label(c: Case): string {
  return `B${c.B} H${c.H}/${c.KVH} T${c.T} S${c.S ?? c.T} D${c.D}${c.causal ? ' causal' : ''}${c.window ? ` W${c.window}` : ''}`
    + `${c.positionOffset ? ` offset ${c.positionOffset}` : ''}${c.keyRanges ? ` keys ${JSON.stringify(c.keyRanges)}` : ''}${c.scale ? ` scale ${c.scale}` : ''}`;
}

function optionsOf(c: Case): AttentionOptions {
  return {
    causal: c.causal, window: c.window, positionOffset: c.positionOffset, scale: c.scale,
    keyRange: c.keyRanges ? Tensor.fromArray(c.keyRanges.flat(), [c.B, 2], 'i32') : undefined,
  };
}

let seed = 1;
/** Normal values rounded to f16 (as f32), and their shapes. */
function inputs(c: Case) {
  const S = c.S ?? c.T;
  const rounded = (n: number) => f16ToF32(f32ToF16(Float32Array.from(randn(n, seed++))));
  return {
    q: rounded(c.B * c.H * c.T * c.D), k: rounded(c.B * c.KVH * S * c.D), v: rounded(c.B * c.KVH * S * c.D),
    qShape: [c.B, c.H, c.T, c.D], kvShape: [c.B, c.KVH, S, c.D],
  };
}
type Inputs = ReturnType<typeof inputs>;

/** f16 tensors of the inputs: the f16 dtype, or u32 words holding two halves (the older f16-storage form). */
function halves(x: Inputs, packed: boolean): [Tensor, Tensor, Tensor] {
  const one = (data: Float32Array, shape: number[]) => {
    if (!packed) return Tensor.fromArray(data, shape, 'f16');
    const bits = f32ToF16(data);
    return Tensor.fromArray(new Uint32Array(bits.buffer), [...shape.slice(0, -1), shape[shape.length - 1]! / 2], 'u32');
  };
  return [one(x.q, x.qShape), one(x.k, x.kvShape), one(x.v, x.kvShape)];
}

/** The f32 fused kernel on the f16-rounded values: the reference. */
async function reference(c: Case, x: Inputs) {
  const { out, lse } = attentionWithLse(Tensor.fromArray(x.q, x.qShape), Tensor.fromArray(x.k, x.kvShape), Tensor.fromArray(x.v, x.kvShape), optionsOf(c));
  return { out: await download(out), lse: await download(lse) };
}

/** lse with -inf where a row sees no key: the infinities must match exactly, the rest within tol. */
function assertLse(ours: Float64Array, ref: Float64Array, tol: number, what: string): void {
  const finite = [...ref.keys()].filter((i) => Number.isFinite(ref[i]));
  ref.forEach((x, i) => { if (!Number.isFinite(x)) assert.is(ours[i], -Infinity, `${what}: row ${i} sees no key, lse ${ours[i]}`); });
  assertClose(finite.map((i) => ours[i]!), finite.map((i) => ref[i]!), tol, what);
}

async function compare(c: Case, what: string, run: (x: Inputs) => { out: Tensor; lse: Tensor }): Promise<void> {
  const x = inputs(c);
  await tidyAsync(async () => {
    const ref = await reference(c, x);
    const ours = run(x);
    assertClose(await download(ours.out), ref.out, OUT_TOL, `${what} ${label(c)} out`);
    assertLse(await download(ours.lse), ref.lse, LSE_TOL, `${what} ${label(c)} lse`);
  });
}

const H100: TensorCoreDevice = { subgroupSize: 32, maxWorkgroupBytes: 49152, maxInvocations: 1024 };
const M16N16K16: MatrixShape = { M: 16, N: 16, K: 16 };

test('plans at the H100 limits: tiles that fit 48 KiB, head dims refused with the reason', () => {
  const plan = (D: number, shape = M16N16K16, device = H100) => planTensorCore(D, shape, device);
  assert.equal(plan(64).variant, { shape: M16N16K16, subgroupSize: 32, subgroups: 4, BC: 64, D: 64 });
  assert.is(plan(128).variant?.subgroups, 2);
  assert.is(plan(128).variant?.BC, 32);
  for (const D of [2, 12, 16, 64, 80, 96, 128, 160, 256]) {
    for (const shape of [M16N16K16, { M: 16, N: 8, K: 16 }, { M: 16, N: 8, K: 8 }]) {
      const { variant, reason } = plan(D, shape);
      assert.ok(variant, `D${D} M${shape.M}N${shape.N}K${shape.K}: ${reason}`);
      const L = tensorCoreLayout(variant!);
      assert.ok(L.bytes <= H100.maxWorkgroupBytes, `D${D}: ${L.bytes} bytes`);
      assert.ok(L.DP >= D && L.DP % shape.K === 0 && L.DP % shape.N === 0, `D${D}: padded to ${L.DP}`);
      assert.is(L.WG % H100.subgroupSize, 0);
    }
  }
  assert.match(plan(63).reason!, /not even/);
  assert.match(plan(MAX_HEAD_DIM + 8).reason!, /> 256/);
  assert.match(plan(64, M16N16K16, { ...H100, subgroupSize: 8 }).reason!, /M16 does not divide the subgroup size 8/);
  assert.match(plan(256, M16N16K16, { ...H100, maxWorkgroupBytes: 16384 }).reason!, /no tile at head dim 256/);
});

test('the shader: directives first, one matrix builtin form, and an emulation with none left', () => {
  const src = attentionTensorCoreSampleKernel.source;
  assert.ok(src.startsWith('enable f16;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);\n'));
  assert.match(src, /alias Left = subgroup_matrix_left<f16, 16, 16>;/);
  assert.match(src, /alias Acc = subgroup_matrix_result<f32, 16, 16>;/);
  // The template form this Dawn accepts; the older form with a boolean column-major argument does not compile.
  assert.not.match(src.replace(/\/\/[^\n]*/g, ''), /subgroupMatrix(Load|Store)\([^)]*(true|false)/);
  const variant = planTensorCore(64, { M: 16, N: 8, K: 16 }, H100).variant!;
  const n8 = attentionTensorCoreKernel(variant, false).source;
  assert.match(n8, /subgroupMatrixLoad<Right, row_major>\(&kvTile, kk \* K_STRIDE \+ n, K_STRIDE\)/);
  assert.match(n8, /alias Right = subgroup_matrix_right<f16, 8, 16>;/);
  const emulated = emulate(n8, variant);
  assert.not.match(emulated.replace(/\/\/[^\n]*/g, ''), /subgroupMatrix|subgroup_matrix/);
  assert.match(emulated, /struct Right \{ e: array<f32, 128> \}/);
  assert.match(emulated, /fn emulatedLoad_Right_kvTile\(/);
});

// The issue's shapes: T in {1, 17, 64, 129, 300}, D in {16, 64, 80, 128} (and 12, 256: padded dims, the largest),
// GQA 1 and 4, windows, offsets into a longer cache, padding with rows that see no key, S ≠ T, a scale.
const cases: Case[] = [
  { B: 1, H: 2, KVH: 2, T: 1, D: 64 },
  { B: 2, H: 4, KVH: 1, T: 17, D: 64, causal: true },
  { B: 1, H: 4, KVH: 4, T: 64, D: 128, causal: true },
  { B: 1, H: 4, KVH: 1, T: 129, D: 64, window: 40 },
  { B: 1, H: 2, KVH: 2, T: 300, D: 128, causal: true },
  { B: 1, H: 4, KVH: 1, T: 300, S: 340, D: 64, window: 100, positionOffset: 40 },
  { B: 1, H: 2, KVH: 1, T: 7, S: 90, D: 64, causal: true, positionOffset: 83 },
  { B: 2, H: 2, KVH: 2, T: 33, D: 64, causal: true, keyRanges: [[5, 33], [0, 20]] },
  { B: 1, H: 2, KVH: 1, T: 45, D: 16, window: 13 },
  { B: 1, H: 2, KVH: 2, T: 29, D: 80, causal: true },
  { B: 1, H: 1, KVH: 1, T: 23, D: 12 },
  { B: 1, H: 2, KVH: 1, T: 37, D: 256, causal: true },
  { B: 1, H: 2, KVH: 2, T: 50, S: 70, D: 64, scale: 0.3 },
];

// On any device: the kernel's logic with emulated matrices, at subgroups of 32 and 16 lanes (2 and 1 lanes per
// row) and three matrix shapes. Each (shape, head dim) is a shader that lavapipe compiles in
// seconds, so the smaller cases share six of them.
test('emulated subgroup matrices equal the f32 kernel on f16-rounded inputs', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the tensor-core kernel is not tested'); return; }
  const { limits } = gpu();
  const setups: { shape: MatrixShape; subgroupSize: number }[] = [
    { shape: M16N16K16, subgroupSize: 32 },
    { shape: M16N16K16, subgroupSize: 16 },
    { shape: { M: 16, N: 8, K: 8 }, subgroupSize: 16 },
    { shape: { M: 16, N: 8, K: 16 }, subgroupSize: 16 },
  ];
  const find = (pred: (c: Case) => boolean) => cases.find(pred)!;
  const runs: [Case, number][] = [
    [find((c) => c.T === 1), 0], [find((c) => c.T === 17), 0], [find((c) => c.T === 129), 0],
    [find((c) => c.positionOffset === 83), 1], [find((c) => c.keyRanges !== undefined), 1], [find((c) => c.scale !== undefined), 1],
    [find((c) => c.D === 12), 2], [find((c) => c.D === 16), 2],
    [find((c) => c.D === 80), 3], [find((c) => c.D === 128 && c.T === 64), 3],
  ];
  for (const [i, [c, which]] of runs.entries()) {
    const s = setups[which]!;
    const device = { subgroupSize: s.subgroupSize, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxInvocations: limits.maxComputeInvocationsPerWorkgroup };
    const { variant, reason } = planTensorCore(c.D, s.shape, device);
    assert.ok(variant, reason);
    await compare(c, `emulated M${s.shape.M}N${s.shape.N}K${s.shape.K} SG${s.subgroupSize}`, (x) => {
      const [q, k, v] = halves(x, i % 2 === 1);
      const { dims, mask, scale, keyRange } = attentionSetup(q, k, v, optionsOf(c), 'f16');
      const out = Tensor.empty([dims.B, dims.H, dims.T, dims.D]);
      const lse = Tensor.empty([dims.B, dims.H, dims.T]);
      launch(emulatedTensorCoreCall(dims, mask, scale, variant!), [q, k, v, keyRange], [out, lse]);
      return { out, lse };
    });
  }
});

test('tensor cores equal the f32 kernel on f16-rounded inputs, for every matrix shape of the device', async () => {
  await initGpu();
  const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
  if (unsupported) { console.log(`tensor-core attention not tested on this device: ${unsupported}`); return; }
  for (const shape of tensorCoreShapes(subgroupMatrixDevice())) {
    for (const [i, c] of cases.entries()) {
      await compare(c, `tensor cores M${shape.M}N${shape.N}K${shape.K}`, (x) => {
        const [q, k, v] = halves(x, i % 2 === 1);
        return attentionTensorCore(q, k, v, { ...optionsOf(c), shape });
      });
    }
  }
});

test("variant selection: 'auto' takes the tensor cores where they serve, else the f32 kernel; 'tensorCore' refuses clearly", async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: f16-storage selection not tested'); return; }
  const c: Case = { B: 1, H: 2, KVH: 1, T: 20, D: 16, causal: true };
  const x = inputs(c);
  await tidyAsync(async () => {
    const [q, k, v] = halves(x, false);
    ledger.reset();
    const auto = attentionWithLse(q, k, v, { ...optionsOf(c), variant: 'auto' });
    const plain = attentionWithLse(q, k, v, optionsOf(c));
    const ops = ledger.byOp().map((r) => r.key);
    const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
    if (unsupported) {
      assert.equal(ops, ['attentionForwardF16'], 'auto fell back to the f32 kernel');
      assert.equal(await download(auto.out), await download(plain.out));
      assert.throws(() => attentionTensorCore(q, k, v, optionsOf(c)), (e: Error) => e.message.includes(unsupported) && e.message.includes('f32 kernel serves'));
      assert.throws(() => attentionWithLse(q, k, v, { variant: 'tensorCore' }), /attentionTensorCore/);
    } else {
      assert.ok(ops.includes('attentionForwardTensorCore') && ops.includes('attentionForwardF16'), `ops ${ops.join(', ')}`);
      assertClose(await download(auto.out), await download(plain.out), OUT_TOL, 'auto vs f32 kernel');
      // An odd head dim has no tensor-core variant: auto falls back, tensorCore refuses.
      const odd = [Tensor.zeros([1, 1, 4, 7], 'f16'), Tensor.zeros([1, 1, 4, 7], 'f16'), Tensor.zeros([1, 1, 4, 7], 'f16')] as const;
      ledger.reset();
      attentionWithLse(...odd, { variant: 'auto' });
      assert.equal(ledger.byOp().map((r) => r.key), ['attentionForwardF16']);
      assert.throws(() => attentionTensorCore(...odd), /head dim 7 is not even/);
    }
    // f32 inputs are not f16 storage: auto keeps the f32 kernel, tensorCore refuses.
    const f32q = Tensor.fromArray(x.q, x.qShape);
    assert.throws(() => attentionTensorCore(f32q, f32q, f32q), /f16 storage needs u32 or f16 tensors/);
  });
});

test('f16 tensors and u32 words of f16 pairs give the same bits through the f32 kernel', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: f16 storage not tested'); return; }
  const c: Case = { B: 1, H: 4, KVH: 2, T: 21, D: 16, window: 6 };
  const x = inputs(c);
  await tidyAsync(async () => {
    const a = attentionWithLse(...halves(x, false), optionsOf(c));
    const b = attentionWithLse(...halves(x, true), optionsOf(c));
    assert.equal(await download(a.out), await download(b.out));
    assert.equal(await download(a.lse), await download(b.lse));
    const [q, k] = halves(x, false);
    const [, kPacked] = halves(x, true);
    assert.throws(() => attentionWithLse(q, kPacked, k), /all alike/);
  });
});

test.run();
