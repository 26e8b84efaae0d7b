// The taped attention() under mixed precision (autocast): on the tensor cores, forward and backward, where they
// serve, through f16 copies of q, k, v whose gradients reach the f32 leaves; the f32 kernels elsewhere. Checked
// through the emulated subgroup matrices (withTensorCores, emulatedTensorCores: any device with shader-f16,
// lavapipe included) against the f32 taped path outside autocast, with the ledger's FLOPs equal to the analytic
// model's (train/audit_model.ts) on the tiles attentionKernels reports; then on this device as it is.
//
// Tolerance as attention_tensor_core_backward.test.ts (2e-3): the leaves and dout hold f16-rounded values, so the
// casts are exact and what differs is the kernels' rounding of P (forward), and of dO, P and dS (backward), to f16.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { autocast, backward } from '../../engine/autodiff.ts';
import { gpu } from '../../engine/gpu.ts';
import { ledger } from '../../engine/ledger.ts';
import { attention, attentionKernels, subgroupMatrixDevice, withTensorCores, type AttentionOptions } from '../../engine/ops/attention.ts';
import { tensorCoreDeviceUnsupported } from '../../kernels/attention_forward_tensor_core.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { Tensor, tidy, tidyAsync } from '../../engine/tensor.ts';
import {
  ATTENTION_DELTA_FLOPS, ATTENTION_DKDV_FLOPS_PER_ENTRY_DIM, ATTENTION_DQ_FLOPS_PER_ENTRY_DIM, ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM, tiledEntries,
} from '../../train/audit_model.ts';
import { download, initGpu, randn, relErr, upload } from '../support/util.ts';
import { emulatedTensorCores } from '../support/subgroup_matrix_emulation.ts';

const TOL = 2e-3;
// Subgroups of 32 lanes with M16 N16 K16 matrices (an H100's); cold, lavapipe compiles each emulated shader in tens
// of seconds, so every case has head dim 16: six shaders (forward, dK/dV, dQ, with keyRange and without).
const EMULATED = emulatedTensorCores({ M: 16, N: 16, K: 16 }, 32);

/** Causal (the models' training attention), so that the audit's count applies: window W or none, padding or none. */
interface Case { B: number; H: number; KVH: number; T: number; D: number; window?: number; keyRanges?: [number, number][] }

const label = (c: Case) => `B${c.B} H${c.H}/${c.KVH} T${c.T} D${c.D}${c.window ? ` W${c.window}` : ''}${c.keyRanges ? ` keys ${JSON.stringify(c.keyRanges)}` : ''}`;

function optionsOf(c: Case): AttentionOptions {
  return { causal: true, window: c.window, keyRange: c.keyRanges ? Tensor.fromArray(c.keyRanges.flat(), [c.B, 2], 'i32') : undefined };
}

let seed = 31;
/** Normal values rounded to f16 (as f32), and their shapes. */
function inputs(c: Case) {
  const rounded = (n: number) => f16ToF32(f32ToF16(Float32Array.from(randn(n, seed++))));
  const nq = c.B * c.H * c.T * c.D, nkv = c.B * c.KVH * c.T * c.D;
  return { q: rounded(nq), k: rounded(nkv), v: rounded(nkv), dout: rounded(nq), qShape: [c.B, c.H, c.T, c.D], kvShape: [c.B, c.KVH, c.T, c.D] };
}
type Inputs = ReturnType<typeof inputs>;

interface Run { out: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array; flops: Map<string, number> }

/** attention() on f32 leaves (inside autocast or not), backward() through it outside: out, the leaves' f32 gradients, the ledger's FLOPs by op. */
async function taped(c: Case, x: Inputs, mixed: boolean): Promise<Run> {
  const [q, k, v] = [upload(x.q, x.qShape, true), upload(x.k, x.kvShape, true), upload(x.v, x.kvShape, true)];
  ledger.reset();
  const run = await tidyAsync(async () => {
    const forward = () => attention(q, k, v, optionsOf(c));
    const out = mixed ? autocast(forward) : forward();
    tidy(() => backward(out, upload(x.dout, x.qShape)));
    for (const g of [q.grad, k.grad, v.grad]) assert.ok(g?.dtype === 'f32', `${label(c)}: an f32 gradient on each f32 leaf`);
    return { out: await download(out), dq: await download(q.grad!), dk: await download(k.grad!), dv: await download(v.grad!), flops: new Map(ledger.byOp().map((r) => [r.key, r.flops])) };
  });
  for (const t of [q, k, v, q.grad, k.grad, v.grad]) t?.dispose();
  return run;
}

/** The largest relative error of out, dq, dk, dv against the reference, each checked against TOL. */
function compare(ours: Run, ref: Run, what: string): number {
  let worst = 0;
  for (const name of ['out', 'dq', 'dk', 'dv'] as const) {
    const e = relErr(ours[name], ref[name]);
    assert.ok(e <= TOL, `${what} ${name}: relative error ${e.toExponential(3)} > ${TOL}`);
    worst = Math.max(worst, e);
  }
  return worst;
}

const F32_OPS = ['attentionBackwardDelta', 'attentionBackwardDkDv', 'attentionBackwardDq', 'attentionForward'];

// GQA 2 and 4 and none; causal, a sliding window, padding left and right with rows that see no key; T ragged against the tiles.
const cases: Case[] = [
  { B: 1, H: 4, KVH: 2, T: 37, D: 16 },
  { B: 1, H: 2, KVH: 2, T: 40, D: 16, window: 9 },
  { B: 2, H: 4, KVH: 1, T: 33, D: 16, keyRanges: [[3, 33], [0, 25]] },
];

test('emulated tensor cores: under autocast, backward() through attention() equals the f32 taped path; the ledger the analytic count', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the mixed-precision attention is not tested'); return; }
  for (const c of cases) {
    const x = inputs(c);
    const ref = await taped(c, x, false);
    await withTensorCores(EMULATED, async () => {
      const plan = attentionKernels(c.D, { mixedPrecision: true, hasKeyRange: c.keyRanges !== undefined });
      assert.is(plan.kernels, 'tensorCore', plan.reason);
      const ours = await taped(c, x, true);
      console.log(`  ${label(c)}: max relative error ${compare(ours, ref, `emulated ${label(c)}`).toExponential(2)} (out, dq, dk, dv)`);
      // The analytic model's count (train/audit_model.ts) on the tiles the taped attention reports: exact.
      const perDim = c.B * c.H * c.D, W = c.window ?? null;
      const expected = new Map([
        ['attentionForwardTensorCoreEmulated', ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM * perDim * tiledEntries(c.T, plan.forward, W)],
        ['attentionBackwardDelta', ATTENTION_DELTA_FLOPS * perDim * c.T],
        ['attentionBackwardDkDvTensorCoreEmulated', ATTENTION_DKDV_FLOPS_PER_ENTRY_DIM * perDim * tiledEntries(c.T, plan.dkdv, W)],
        ['attentionBackwardDqTensorCoreEmulated', ATTENTION_DQ_FLOPS_PER_ENTRY_DIM * perDim * tiledEntries(c.T, plan.dq, W)],
      ]);
      const charged = [...ours.flops].filter(([op]) => op.startsWith('attention')).sort();
      assert.equal(charged, [...expected].sort(), `${label(c)}: the attention kernels' FLOPs in the ledger`);
      assert.is(ours.flops.get('castF16'), 0, `${label(c)}: the casts of q, k, v (bytes, no FLOPs)`);
    });
  }
});

test('emulated tensor cores: a head dim they cannot take keeps the f32 kernels under autocast, bit for bit', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) return;
  const c: Case = { B: 1, H: 2, KVH: 1, T: 12, D: 7 };
  const x = inputs(c);
  const ref = await taped(c, x, false);
  await withTensorCores(EMULATED, async () => {
    const plan = attentionKernels(c.D, { mixedPrecision: true });
    assert.is(plan.kernels, 'f32');
    assert.match(plan.reason ?? '', /head dim 7 is not even/);
    const ours = await taped(c, x, true);
    assert.equal([...ours.flops.keys()].sort(), F32_OPS);
    for (const name of ['out', 'dq', 'dk', 'dv'] as const) assert.equal(ours[name], ref[name], name);
  });
});

test('this device: under autocast the f32 kernels where it has no subgroup matrices (bit for bit), else the tensor cores', async () => {
  await initGpu();
  const unsupported = tensorCoreDeviceUnsupported(subgroupMatrixDevice());
  for (const c of [cases[0]!, cases[2]!]) {
    const x = inputs(c);
    const ref = await taped(c, x, false);
    const ours = await taped(c, x, true);
    const plan = attentionKernels(c.D, { mixedPrecision: true, hasKeyRange: c.keyRanges !== undefined });
    const ops = [...ours.flops.keys()].sort();
    if (unsupported) {
      assert.is(plan.kernels, 'f32');
      assert.ok(plan.reason?.includes(unsupported), plan.reason);
      assert.equal(ops, F32_OPS, `${label(c)}: ledger ops`);
      for (const name of ['out', 'dq', 'dk', 'dv'] as const) assert.equal(ours[name], ref[name], `${label(c)} ${name}`);
    } else if (plan.kernels === 'tensorCore') {
      for (const op of ['castF16', 'attentionForwardTensorCore', 'attentionBackwardDkDvTensorCore', 'attentionBackwardDqTensorCore']) assert.ok(ops.includes(op), `${label(c)}: ops ${ops.join(', ')}`);
      console.log(`  tensor cores ${label(c)}: max relative error ${compare(ours, ref, `tensor cores ${label(c)}`).toExponential(2)} (out, dq, dk, dv)`);
    } else {
      console.log(`  ${label(c)}: the f32 kernels under autocast: ${plan.reason}`);
      assert.equal(ops, F32_OPS, `${label(c)}: ledger ops`);
    }
  }
});

test.run();
