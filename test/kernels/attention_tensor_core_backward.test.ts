// The tensor-core backward (kernels/attention_backward_tensor_core.*: dK/dV and dQ on subgroup matrices) against
// the f32 fused backward on the same f16-rounded q, k, v and dout and the same forward out and lse: its logic
// through the emulated subgroup matrices (any device with shader-f16, lavapipe included), the real subgroup matrices
// for every shape of the device (skipped, with a line, where it has none), and its refusals.
//
// Tolerance: with the same f16 operands, S, dP and delta agree to f32 rounding; the gradients differ because P and
// dS are rounded to f16 before the products Pᵀ dO, dSᵀ Q and dS K: a relative error up to 2^-11 ≈ 4.9e-4 per
// weight (RMS 2.8e-4), so about 3e-4 relative on dq, dk, dv (1.8e-4 to 2.5e-4 measured emulated; 0 at T = 1, where
// P = 1); 2e-3, as the forward's out, leaves room for truncating conversions and the tensor cores' accumulation order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { gpu } from '../../engine/gpu.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { attention, attentionSetup, attentionTensorCore, attentionTensorCoreBackward, attentionWithLse, subgroupMatrixDevice, type AttentionOptions } from '../../engine/ops/attention.ts';
import { attentionDeltaCall } from '../../kernels/attention_delta.ts';
import { planBackwardTensorCore, type BackwardKind } from '../../kernels/attention_backward_tensor_core.ts';
import { tensorCoreDeviceUnsupported, tensorCoreShapes } from '../../kernels/attention_forward_tensor_core.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { Tensor, tidy, tidyAsync } from '../../engine/tensor.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';
import { emulatedBackwardTensorCoreCall } from '../support/subgroup_matrix_emulation.ts';

const GRAD_TOL = 2e-3;

interface Case { B: number; H: number; KVH: number; T: number; S?: number; D: number; causal?: boolean; window?: number; positionOffset?: number; keyRanges?: [number, number][] }

function label(c: Case): string {
  return `B${c.B} H${c.H}/${c.KVH} T${c.T} S${c.S ?? c.T} D${c.D}${c.causal ? ' causal' : ''}${c.window ? ` W${c.window}` : ''}`
    + `${c.positionOffset ? ` offset ${c.positionOffset}` : ''}${c.keyRanges ? ` keys ${JSON.stringify(c.keyRanges)}` : ''}`;
}

function optionsOf(c: Case): AttentionOptions {
  return {
    causal: c.causal, window: c.window, positionOffset: c.positionOffset,
    keyRange: c.keyRanges ? Tensor.fromArray(c.keyRanges.flat(), [c.B, 2], 'i32') : undefined,
  };
}

let seed = 11;
/** Normal values rounded to f16 (as f32), and their shapes. */
function inputs(c: Case) {
  const S = c.S ?? c.T;
  const rounded = (n: number) => f16ToF32(f32ToF16(Float32Array.from(randn(n, seed++))));
  return {
    q: rounded(c.B * c.H * c.T * c.D), k: rounded(c.B * c.KVH * S * c.D), v: rounded(c.B * c.KVH * S * c.D), dout: rounded(c.B * c.H * c.T * c.D),
    qShape: [c.B, c.H, c.T, c.D], kvShape: [c.B, c.KVH, S, c.D],
  };
}
type Inputs = ReturnType<typeof inputs>;
interface Gradients { dq: Float64Array; dk: Float64Array; dv: Float64Array }

/** The f32 fused backward through the tape on the f16-rounded values: the reference. */
async function reference(c: Case, x: Inputs): Promise<Gradients> {
  const [q, k, v] = [upload(x.q, x.qShape, true), upload(x.k, x.kvShape, true), upload(x.v, x.kvShape, true)];
  const grads = await tidyAsync(async () => {
    const out = attention(q, k, v, optionsOf(c));
    tidy(() => backward(out, upload(x.dout, x.qShape)));
    return { dq: await download(q.grad!), dk: await download(k.grad!), dv: await download(v.grad!) };
  });
  for (const t of [q, k, v, q.grad, k.grad, v.grad]) t?.dispose();
  return grads;
}

/** A backward on f16 q, k, v and f32 dout, out and lse. */
type BackwardRun = (q: Tensor, k: Tensor, v: Tensor, dout: Tensor, out: Tensor, lse: Tensor) => { dq: Tensor; dk: Tensor; dv: Tensor };

/** Ours on f16 q, k, v, with out and lse from the f32 forward (the forward's own test covers the tensor-core one). */
async function compare(c: Case, what: string, run: BackwardRun): Promise<void> {
  const x = inputs(c);
  const ref = await reference(c, x);
  await tidyAsync(async () => {
    const { out, lse } = attentionWithLse(Tensor.fromArray(x.q, x.qShape), Tensor.fromArray(x.k, x.kvShape), Tensor.fromArray(x.v, x.kvShape), optionsOf(c));
    const half = (data: Float32Array, shape: number[]) => Tensor.fromArray(data, shape, 'f16');
    const ours = run(half(x.q, x.qShape), half(x.k, x.kvShape), half(x.v, x.kvShape), Tensor.fromArray(x.dout, x.qShape), out, lse);
    for (const name of ['dq', 'dk', 'dv'] as const) assertClose(await download(ours[name]), ref[name], GRAD_TOL, `${what} ${label(c)} ${name}`);
  });
}

// Ragged T and S, GQA 1, 2 and 4, causal, a window with an offset into a longer cache, padding with rows that
// see no key, padded head dims (24 of 32).
const cases: Case[] = [
  { B: 1, H: 2, KVH: 2, T: 1, D: 16 },
  { B: 1, H: 2, KVH: 2, T: 17, D: 16 },
  { B: 1, H: 1, KVH: 1, T: 23, S: 19, D: 16 },
  { B: 1, H: 4, KVH: 2, T: 29, S: 40, D: 16, window: 9, positionOffset: 11 },
  { B: 2, H: 4, KVH: 1, T: 33, D: 24, causal: true, keyRanges: [[0, 33], [2, 30]] },
  { B: 2, H: 2, KVH: 2, T: 33, D: 24, causal: true, keyRanges: [[5, 33], [0, 20]] },
];

// The emulated kernels at subgroups of 32 lanes (M16 N16 K16) and of 16 (M16 N8 K16). Cold, lavapipe compiles each
// emulated backward shader in tens of seconds, so the cases share four: one variant per head dim, with padding
// (D 24) or without (D 16).
test('emulated subgroup matrices: dq, dk, dv equal the f32 backward on f16-rounded inputs', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the tensor-core backward is not tested'); return; }
  const { limits } = gpu();
  for (const c of cases) {
    const s = c.D === 16 ? { shape: { M: 16, N: 16, K: 16 }, subgroupSize: 32 } : { shape: { M: 16, N: 8, K: 16 }, subgroupSize: 16 };
    const device = { subgroupSize: s.subgroupSize, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxInvocations: limits.maxComputeInvocationsPerWorkgroup };
    const plan = (kind: BackwardKind) => {
      const { variant, reason } = planBackwardTensorCore(kind, c.D, s.shape, device);
      assert.ok(variant, reason);
      return variant!;
    };
    const [dkdv, dq] = [plan('dkdv'), plan('dq')];
    await compare(c, `emulated M${s.shape.M}N${s.shape.N}K${s.shape.K} SG${s.subgroupSize}`, (q, k, v, dout, out, lse) => {
      const { dims, mask, scale, keyRange } = attentionSetup(q, k, v, optionsOf(c), 'f16');
      const delta = Tensor.empty([dims.B, dims.H, dims.T]);
      launch(attentionDeltaCall(deviceLimits(), dims.B * dims.H * dims.T, dims.D), [dout, out], [delta]);
      const inputs = [q, k, v, dout, lse, delta, keyRange];
      const grads = { dq: Tensor.empty([dims.B, dims.H, dims.T, dims.D]), dk: Tensor.empty([dims.B, dims.KVH, dims.S, dims.D]), dv: Tensor.empty([dims.B, dims.KVH, dims.S, dims.D]) };
      launch(emulatedBackwardTensorCoreCall(dims, mask, scale, dkdv), inputs, [grads.dk, grads.dv]);
      launch(emulatedBackwardTensorCoreCall(dims, mask, scale, dq), inputs, [grads.dq]);
      return grads;
    });
  }
});

test('tensor cores: dq, dk, dv equal the f32 backward on f16-rounded inputs, for every matrix shape of the device', async () => {
  await initGpu();
  const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
  if (unsupported) { console.log(`tensor-core attention backward not tested on this device: ${unsupported}`); return; }
  for (const shape of tensorCoreShapes(subgroupMatrixDevice())) {
    for (const c of cases) {
      await compare(c, `tensor cores M${shape.M}N${shape.N}K${shape.K}`, (q, k, v, dout, out, lse) => attentionTensorCoreBackward(dout, q, k, v, out, lse, { ...optionsOf(c), shape }));
    }
  }
});

test('the tensor-core backward refuses clearly: no device feature, f32 q, a dout of the wrong shape', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: f16-storage refusals not tested'); return; }
  await tidyAsync(async () => {
    const half = Tensor.zeros([1, 2, 8, 16], 'f16');
    const f32 = Tensor.zeros([1, 2, 8, 16]);
    const lse = Tensor.zeros([1, 2, 8]);
    assert.throws(() => attentionTensorCoreBackward(f32, f32, f32, f32, f32, lse), /f16 storage needs u32 or f16 tensors/);
    assert.throws(() => attentionTensorCoreBackward(Tensor.zeros([1, 2, 8, 8]), half, half, half, f32, lse), /dout must be f32 \[1, 2, 8, 16\]/);
    const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
    if (unsupported) {
      assert.throws(() => attentionTensorCoreBackward(f32, half, half, half, f32, lse), (e: Error) => e.message.includes(unsupported) && e.message.includes('f32 kernels serve'));
    } else {
      const odd = Tensor.zeros([1, 1, 4, 7], 'f16');
      assert.throws(() => attentionTensorCoreBackward(Tensor.zeros([1, 1, 4, 7]), odd, odd, odd, Tensor.zeros([1, 1, 4, 7]), Tensor.zeros([1, 1, 4])), /head dim 7 is not even/);
      // The forward and backward on the tensor cores charge their own kernels in the ledger.
      ledger.reset();
      const { out, lse: lseTc } = attentionTensorCore(half, half, half, { causal: true });
      attentionTensorCoreBackward(f32, half, half, half, out, lseTc, { causal: true });
      const ops = ledger.byOp().map((r) => r.key);
      for (const op of ['attentionForwardTensorCore', 'attentionBackwardDelta', 'attentionBackwardDkDvTensorCore', 'attentionBackwardDqTensorCore']) assert.ok(ops.includes(op), `ops ${ops.join(', ')}`);
    }
  });
});

test.run();
