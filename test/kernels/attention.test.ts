// Fused attention against a float64 CPU reference, the PyTorch fixtures and the composed attention; decode,
// f16 storage, the memory claim, determinism and the ledger's costs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { readFileSync } from 'node:fs';
import { backward } from '../../engine/autodiff.ts';
import { gpu } from '../../engine/gpu.ts';
import { ledger } from '../../engine/ledger.ts';
import { attention, attentionDecode, attentionDeviceClass, attentionKernels, attentionUsefulFlops, attentionWithLse, type AttentionOptions } from '../../engine/ops/attention.ts';
import { attentionComposed } from '../../engine/ops/attention_composed.ts';
import { pool } from '../../engine/pool.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { Tensor, tidyAsync, tidy } from '../../engine/tensor.ts';
import { tileWork, type AttentionMask } from '../../kernels/attention_forward.ts';
import { attentionForwardRowsCall, attentionRowsUnfit, forwardChoice, ROWS_TILES } from '../../kernels/attention_forward_rows.ts';
import { attentionBackwardDqRowsCall, dqChoice } from '../../kernels/attention_backward_dq_rows.ts';
import { attentionBackwardDkDvRowsCall, dkdvChoice, DKDV_ROWS_TILES } from '../../kernels/attention_backward_dkdv_rows.ts';
import { attentionDeltaCall } from '../../kernels/attention_delta.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randn, relErr, upload } from '../support/util.ts';
import { fixture } from '../support/paths.ts';

interface Case { B: number; H: number; KVH: number; T: number; S?: number; D: number; causal?: boolean; window?: number; positionOffset?: number; keyRanges?: [number, number][]; scale?: number }

/** float64 reference of out, lse and the gradients of <out, dout>: visible keys listed per row, no tiling. */
function attentionReference(c: Case, q: Float64Array, k: Float64Array, v: Float64Array, dout: Float64Array) {
  const { B, H, KVH, T, D } = c;
  const S = c.S ?? T;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * H * T * D), lse = new Float64Array(B * H * T);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const kvh = Math.floor(h / (H / KVH));
    for (let t = 0; t < T; t++) {
      const pos = t + (c.positionOffset ?? 0);
      const [start, end] = c.keyRanges?.[b] ?? [0, S];
      const keys: number[] = [];
      for (let j = start; j < end; j++) {
        if ((c.causal || c.window) && j > pos) continue;
        if (c.window && pos - j >= c.window) continue;
        keys.push(j);
      }
      const qi = ((b * H + h) * T + t) * D;
      const row = (b * H + h) * T + t;
      if (keys.length === 0) { lse[row] = -Infinity; continue; }
      const kRow = (j: number) => ((b * KVH + kvh) * S + j) * D;
      const s = keys.map((j) => { let x = 0; for (let d = 0; d < D; d++) x += q[qi + d] * k[kRow(j) + d]; return x * scale; });
      const m = Math.max(...s);
      lse[row] = m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0));
      const p = s.map((x) => Math.exp(x - lse[row]));
      keys.forEach((j, n) => { for (let d = 0; d < D; d++) out[qi + d] += p[n] * v[kRow(j) + d]; });
      // forward was out = Σ_j p_j v_j with p = softmax(s), so dp_j = dout·v_j, ds_j = p_j (dp_j - dout·out).
      let delta = 0;
      for (let d = 0; d < D; d++) delta += dout[qi + d] * out[qi + d];
      keys.forEach((j, n) => {
        let dp = 0;
        for (let d = 0; d < D; d++) dp += dout[qi + d] * v[kRow(j) + d];
        const ds = p[n] * (dp - delta);
        for (let d = 0; d < D; d++) {
          dv[kRow(j) + d] += p[n] * dout[qi + d];
          dq[qi + d] += ds * scale * k[kRow(j) + d];
          dk[kRow(j) + d] += ds * scale * q[qi + d];
        }
      });
    }
  }
  return { out, lse, dq, dk, dv };
}

let seed = 1;
function inputs(c: Case) {
  const S = c.S ?? c.T;
  return {
    q: randn(c.B * c.H * c.T * c.D, seed++), k: randn(c.B * c.KVH * S * c.D, seed++),
    v: randn(c.B * c.KVH * S * c.D, seed++), dout: randn(c.B * c.H * c.T * c.D, seed++),
  };
}

function shapesOf(c: Case): { q: number[]; kv: number[] } {
  return { q: [c.B, c.H, c.T, c.D], kv: [c.B, c.KVH, c.S ?? c.T, c.D] };
}

function optionsOf(c: Case): AttentionOptions {
  return {
    causal: c.causal, window: c.window, positionOffset: c.positionOffset, scale: c.scale,
    keyRange: c.keyRanges ? Tensor.fromArray(c.keyRanges.flat(), [c.B, 2], 'i32') : undefined,
  };
}

function label(c: Case): string {
  return `B${c.B} H${c.H}/${c.KVH} T${c.T} S${c.S ?? c.T} D${c.D}${c.causal ? ' causal' : ''}${c.window ? ` W${c.window}` : ''}`
    + `${c.positionOffset ? ` offset ${c.positionOffset}` : ''}${c.keyRanges ? ` keys ${JSON.stringify(c.keyRanges)}` : ''}${c.scale ? ` scale ${c.scale}` : ''}`;
}

/** lse with -inf where a row sees no key: the infinities must match exactly, the rest within tol. */
function assertLse(ours: Float64Array, ref: Float64Array, tol: number, what: string): void {
  const finite = [...ref.keys()].filter((i) => Number.isFinite(ref[i]));
  ref.forEach((x, i) => { if (!Number.isFinite(x)) assert.is(ours[i], -Infinity, `${what}: row ${i} sees no key, lse ${ours[i]}`); });
  assertClose(finite.map((i) => ours[i]), finite.map((i) => ref[i]), tol, what);
}

/** out and the gradients of <f(q, k, v), dout> through the tape; frees everything it made. */
async function forwardBackward(f: typeof attention, c: Case, x: ReturnType<typeof inputs>) {
  const shapes = shapesOf(c);
  const [q, k, v] = [upload(x.q, shapes.q, true), upload(x.k, shapes.kv, true), upload(x.v, shapes.kv, true)];
  const result = await tidyAsync(async () => {
    const out = f(q, k, v, optionsOf(c));
    tidy(() => backward(out, upload(x.dout, shapes.q)));
    return { out: await download(out), dq: await download(q.grad!), dk: await download(k.grad!), dv: await download(v.grad!) };
  });
  for (const t of [q, k, v, q.grad, k.grad, v.grad]) t?.dispose();
  return result;
}

test('the float64 reference gradients agree with finite differences', () => {
  const c: Case = { B: 2, H: 4, KVH: 2, T: 6, S: 8, D: 4, window: 3, positionOffset: 1, keyRanges: [[3, 8], [0, 6]] };
  const x = inputs(c);
  const loss = (q: Float64Array, k: Float64Array, v: Float64Array) => dot(attentionReference(c, q, k, v, x.dout).out, x.dout);
  const ref = attentionReference(c, x.q, x.k, x.v, x.dout);
  assert.ok(ref.lse.some((l) => l === -Infinity), 'the case has a row that sees no key');
  assert.ok(relErr(finiteDiff((q) => loss(q, x.k, x.v), x.q), ref.dq) < 1e-6, 'dq');
  assert.ok(relErr(finiteDiff((k) => loss(x.q, k, x.v), x.k), ref.dk) < 1e-6, 'dk');
  assert.ok(relErr(finiteDiff((v) => loss(x.q, x.k, v), x.v), ref.dv) < 1e-6, 'dv');
});

// T in {1, 2, 17, 64, 129, 300}, D in {12, 16, 64, 80, 128, 160, 256}, GQA ratios 1, 2, 4, windows below and
// above T, left and right padding (with rows that see no key), a position offset into a longer cache, S ≠ T, a
// scale. Above D = 128 the tiles hold fewer rows and the backward streams its tiles in chunks of dims (160: a
// ragged last chunk).
const cases: Case[] = [
  { B: 1, H: 1, KVH: 1, T: 1, D: 12 },
  { B: 1, H: 2, KVH: 1, T: 2, D: 16, causal: true },
  { B: 2, H: 2, KVH: 2, T: 17, D: 64, causal: true },
  { B: 1, H: 4, KVH: 2, T: 64, D: 16, window: 5 },
  { B: 1, H: 4, KVH: 1, T: 129, D: 12, window: 200 },
  { B: 2, H: 4, KVH: 2, T: 33, D: 16, causal: true, keyRanges: [[5, 33], [0, 20]] },
  { B: 1, H: 2, KVH: 2, T: 7, S: 30, D: 16, causal: true, positionOffset: 23 },
  { B: 1, H: 2, KVH: 1, T: 9, S: 43, D: 80, scale: 0.3 },
  { B: 1, H: 1, KVH: 1, T: 300, D: 128, causal: true },
  { B: 2, H: 4, KVH: 2, T: 37, D: 256, causal: true, keyRanges: [[3, 37], [0, 29]] },
  { B: 1, H: 4, KVH: 2, T: 7, S: 40, D: 256, window: 24, positionOffset: 33 },
  { B: 1, H: 2, KVH: 1, T: 45, D: 160, window: 13 },
  { B: 2, H: 2, KVH: 1, T: 21, S: 30, D: 160, keyRanges: [[0, 30], [4, 25]] },
];

test('fused forward matches the float64 reference (out, lse)', async () => {
  await initGpu();
  for (const c of cases) {
    const x = inputs(c);
    const ref = attentionReference(c, x.q, x.k, x.v, x.dout);
    const shapes = shapesOf(c);
    await tidyAsync(async () => {
      const { out, lse } = attentionWithLse(upload(x.q, shapes.q), upload(x.k, shapes.kv), upload(x.v, shapes.kv), optionsOf(c));
      assertClose(await download(out), ref.out, 1e-5, `${label(c)} out`);
      assertLse(await download(lse), ref.lse, 1e-5, `${label(c)} lse`);
    });
  }
});

test('fused backward matches the float64 reference (dq, dk, dv), and the tape frees what it saved', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const c of cases) {
    const x = inputs(c);
    const ref = attentionReference(c, x.q, x.k, x.v, x.dout);
    const ours = await forwardBackward(attention, c, x);
    assertClose(ours.out, ref.out, 1e-5, `${label(c)} out`);
    assertClose(ours.dq, ref.dq, 1e-4, `${label(c)} dq`);
    assertClose(ours.dk, ref.dk, 1e-4, `${label(c)} dk`);
    assertClose(ours.dv, ref.dv, 1e-4, `${label(c)} dv`);
  }
  assert.is(pool.liveBytes, base);
});

/** The subgroup facts of this device (as engine/ops/attention.ts reads them). */
function subgroupsOf() {
  const { features, adapterInfo } = gpu();
  return { subgroups: features.has('subgroups'), subgroupMinSize: adapterInfo.subgroupMinSize, subgroupMaxSize: adapterInfo.subgroupMaxSize };
}

function maskOf(c: Case): AttentionMask {
  return { causal: c.causal ?? false, window: c.window ?? 0, positionOffset: c.positionOffset ?? 0, hasKeyRange: c.keyRanges !== undefined };
}

// The rows forward, dQ and dK/dV (kernels/attention_forward_rows.wgsl, attention_backward_dq_rows.wgsl,
// attention_backward_dkdv_rows.wgsl), launched directly wherever the device has subgroups of 8:
// ragged T (rows past the edge), S ≠ T and ragged (keys past the edge), GQA, windows inside a key tile, padding with
// rows that see no key, a position offset, D 4 to 64 (one and two output quads per lane, D / 4 not a multiple of 8).
const rowsCases: Case[] = [
  { B: 1, H: 1, KVH: 1, T: 1, D: 4 },
  { B: 2, H: 2, KVH: 1, T: 70, D: 64, causal: true },
  { B: 1, H: 4, KVH: 2, T: 100, D: 12, window: 13 },
  { B: 2, H: 4, KVH: 2, T: 45, D: 48, causal: true, keyRanges: [[5, 45], [0, 30]] },
  { B: 1, H: 2, KVH: 2, T: 9, S: 75, D: 32, window: 40, positionOffset: 66 },
  { B: 1, H: 4, KVH: 1, T: 19, S: 50, D: 16, scale: 0.3, keyRanges: [[7, 41]] },
];

test('rows forward, dQ and dK/dV (lavapipe\'s) match the float64 reference (out, lse, dq, dk, dv), f32 and f16 storage', async () => {
  await initGpu();
  const sub = subgroupsOf();
  if (attentionDeviceClass() === 'lavapipe') {
    assert.is(forwardChoice(deviceLimits(), sub, 64, 'lavapipe').kernel, 'rows', 'lavapipe runs the rows forward');
    assert.is(dqChoice(deviceLimits(), sub, 64, 'lavapipe').kernel, 'rows', 'lavapipe runs the rows dQ');
    assert.is(dkdvChoice(deviceLimits(), sub, 64, 'lavapipe').kernel, 'rows', 'lavapipe runs the rows dK/dV');
    const plan = attentionKernels(64, { mixedPrecision: false });
    assert.equal([plan.forward, plan.dq, plan.dkdv], [ROWS_TILES, ROWS_TILES, DKDV_ROWS_TILES]);
  }
  const unfit = attentionRowsUnfit(sub, 64);
  if (unfit) { console.log(`rows forward not tested on this device: ${unfit}`); return; }
  const f16 = gpu().features.has('shader-f16');
  for (const c of rowsCases) {
    const x = inputs(c);
    const ref = attentionReference(c, x.q, x.k, x.v, x.dout);
    const shapes = shapesOf(c);
    const dims = { B: c.B, H: c.H, KVH: c.KVH, T: c.T, S: c.S ?? c.T, D: c.D };
    const scale = c.scale ?? 1 / Math.sqrt(c.D);
    await tidyAsync(async () => {
      const keyRange = optionsOf(c).keyRange ?? null;
      const run = (storage: 'f32' | 'f16', q: Tensor, k: Tensor, v: Tensor) => {
        const out = Tensor.empty(shapes.q), lse = Tensor.empty([c.B, c.H, c.T]);
        launch(attentionForwardRowsCall(deviceLimits(), sub, dims, maskOf(c), scale, storage), [q, k, v, keyRange], [out, lse]);
        return { out, lse };
      };
      const [q32, k32, v32, dout] = [upload(x.q, shapes.q), upload(x.k, shapes.kv), upload(x.v, shapes.kv), upload(x.dout, shapes.q)];
      const ours = run('f32', q32, k32, v32);
      assertClose(await download(ours.out), ref.out, 1e-5, `rows ${label(c)} out`);
      assertLse(await download(ours.lse), ref.lse, 1e-5, `rows ${label(c)} lse`);
      const delta = Tensor.empty([c.B, c.H, c.T]), dq = Tensor.empty(shapes.q);
      launch(attentionDeltaCall(deviceLimits(), c.B * c.H * c.T, c.D), [dout, ours.out], [delta]);
      launch(attentionBackwardDqRowsCall(deviceLimits(), sub, dims, maskOf(c), scale), [q32, k32, v32, dout, ours.lse, delta, keyRange], [dq]);
      assertClose(await download(dq), ref.dq, 1e-4, `rows ${label(c)} dq`);
      const dk = Tensor.empty(shapes.kv), dv = Tensor.empty(shapes.kv);
      launch(attentionBackwardDkDvRowsCall(deviceLimits(), sub, dims, maskOf(c), scale), [q32, k32, v32, dout, ours.lse, delta, keyRange], [dk, dv]);
      assertClose(await download(dk), ref.dk, 1e-4, `rows ${label(c)} dk`);
      assertClose(await download(dv), ref.dv, 1e-4, `rows ${label(c)} dv`);
      if (!f16 || c.D % 2 !== 0) return;
      const [q, k, v] = [toF16(x.q, shapes.q), toF16(x.k, shapes.kv), toF16(x.v, shapes.kv)];
      const half = run('f16', q.packed, k.packed, v.packed);
      const single = run('f32', upload(q.rounded, shapes.q), upload(k.rounded, shapes.kv), upload(v.rounded, shapes.kv));
      assertClose(await download(half.out), await download(single.out), 1e-6, `rows ${label(c)} f16-storage out vs f32 storage`);
      assertLse(await download(half.lse), await download(single.lse), 1e-6, `rows ${label(c)} f16-storage lse vs f32 storage`);
    });
  }
  // The calls charge their products over the tiles they compute: Q Kᵀ (and dP) over 16 × 32, P V (dS K) over 16 × 4;
  // dK/dV's Sᵀ and dPᵀ over 32 rows × 16 keys, dV and dK over 4 × 16.
  const c = rowsCases[1], mask = maskOf(c), dims = { B: 2, H: 2, KVH: 1, T: 70, S: 70, D: 64 };
  const entries = (BC: number) => tileWork(70, 70, ROWS_TILES.BR, BC, mask).entries;
  assert.is(attentionForwardRowsCall(deviceLimits(), sub, dims, mask, 1).cost.flops, 2 * 64 * 4 * (entries(32) + entries(4)));
  assert.ok(entries(4) < entries(32), 'P V skips blocks of the diagonal tiles');
  assert.is(attentionBackwardDqRowsCall(deviceLimits(), sub, dims, mask, 1).cost.flops, 2 * 64 * 4 * (2 * entries(32) + entries(4)));
  const keyEntries = (BR: number) => tileWork(70, 70, BR, DKDV_ROWS_TILES.BC, mask).entries;
  assert.is(attentionBackwardDkDvRowsCall(deviceLimits(), sub, dims, mask, 1).cost.flops, 4 * 64 * 4 * (keyEntries(32) + keyEntries(4)));
});

function fixtureDir(name: string): string {
  return `${fixture(`hf/${name}`)}/`;
}

for (const name of ['attention_causal', 'attention_gqa_window']) {
  test(`PyTorch fixture ${name}: out, lse at 1e-5; dq, dk, dv at 1e-4`, async () => {
    await initGpu();
    const dir = fixtureDir(name);
    const json = readFileSync(`${dir}expected.json`, 'utf8');
    const meta = JSON.parse(json) as { B: number; H: number; KVH: number; T: number; D: number; window: number | null };
    assert.match(json, /iff j <= i/, 'the fixture is causal');
    const f = SafetensorsFile.open(`${dir}expected.safetensors`);
    const read = (n: string) => Float64Array.from(f.read(n));
    const c: Case = { B: meta.B, H: meta.H, KVH: meta.KVH, T: meta.T, D: meta.D, causal: true, window: meta.window ?? undefined };
    const x = { q: read('q'), k: read('k'), v: read('v'), dout: read('dout') };
    const ours = await forwardBackward(attention, c, x);
    const shapes = shapesOf(c);
    const lse = await tidyAsync(async () => download(attentionWithLse(upload(x.q, shapes.q), upload(x.k, shapes.kv), upload(x.v, shapes.kv), optionsOf(c)).lse));
    assertClose(ours.out, read('out'), 1e-5, `${name} out`);
    assertClose(lse, read('lse'), 1e-5, `${name} lse`);
    assertClose(ours.dq, read('dq'), 1e-4, `${name} dq`);
    assertClose(ours.dk, read('dk'), 1e-4, `${name} dk`);
    assertClose(ours.dv, read('dv'), 1e-4, `${name} dv`);
    f.close();
  });
}

test('fused equals composed (forward and gradients), rows that see no key included', async () => {
  await initGpu();
  const composedCases: Case[] = [
    { B: 2, H: 4, KVH: 2, T: 19, D: 16, causal: true, keyRanges: [[6, 19], [0, 11]] },
    { B: 1, H: 4, KVH: 1, T: 40, D: 12, window: 9 },
    { B: 1, H: 2, KVH: 2, T: 5, S: 21, D: 16, causal: true, positionOffset: 16 },
  ];
  const base = pool.liveBytes;
  for (const c of composedCases) {
    const x = inputs(c);
    const fused = await forwardBackward(attention, c, x);
    const composed = await forwardBackward(attentionComposed, c, x);
    const ref = attentionReference(c, x.q, x.k, x.v, x.dout);
    assertClose(composed.out, ref.out, 1e-5, `${label(c)} composed out vs reference`);
    assertClose(composed.dq, ref.dq, 1e-4, `${label(c)} composed dq vs reference`);
    for (const key of ['out', 'dq', 'dk', 'dv'] as const) assertClose(fused[key], composed[key], key === 'out' ? 1e-5 : 1e-4, `${label(c)} fused vs composed ${key}`);
  }
  assert.is(pool.liveBytes, base);
});

/** Rows [from, to) of the third dim of a [A, B, rows, D] array. */
function sliceRows(x: ArrayLike<number>, shape: number[], from: number, to: number): Float64Array {
  const [A, B, R, D] = shape;
  const out = new Float64Array(A * B * (to - from) * D);
  for (let ab = 0; ab < A * B; ab++) for (let r = from; r < to; r++) for (let d = 0; d < D; d++)
    out[(ab * (to - from) + r - from) * D + d] = x[(ab * R + r) * D + d];
  return out;
}

interface DecodeCase { B: number; H: number; KVH: number; D: number; filled: number; capacity: number; T: number; chunk: number; window?: number; keyRanges?: [number, number][] }

test('decode of the last T rows against a KV cache equals the full computation', async () => {
  await initGpu();
  const decodeCases: DecodeCase[] = [
    { B: 1, H: 4, KVH: 1, D: 64, filled: 300, capacity: 300, T: 1, chunk: 64 },
    { B: 2, H: 2, KVH: 2, D: 16, filled: 70, capacity: 80, T: 3, chunk: 32, window: 20, keyRanges: [[10, 70], [0, 70]] },
    { B: 2, H: 4, KVH: 2, D: 256, filled: 50, capacity: 64, T: 2, chunk: 16, window: 30, keyRanges: [[5, 50], [0, 50]] },
    { B: 1, H: 2, KVH: 1, D: 160, filled: 33, capacity: 40, T: 3, chunk: 32 },
    // One chunk: the decode kernel normalises the rows itself, no merge.
    { B: 1, H: 4, KVH: 1, D: 64, filled: 40, capacity: 48, T: 1, chunk: 256 },
    { B: 2, H: 2, KVH: 1, D: 16, filled: 20, capacity: 24, T: 2, chunk: 64, window: 5, keyRanges: [[3, 20], [0, 20]] },
    // A head dim the thread variant's quads do not divide: only the workgroup variant, which the op then picks.
    { B: 1, H: 2, KVH: 1, D: 6, filled: 21, capacity: 24, T: 1, chunk: 8 },
  ];
  for (const c of decodeCases) {
    const full: Case = { B: c.B, H: c.H, KVH: c.KVH, T: c.filled, D: c.D, causal: true, window: c.window, keyRanges: c.keyRanges };
    const shapes = shapesOf(full);
    const x = inputs(full);
    const last = (rows: ArrayLike<number>) => sliceRows(rows, shapes.q, c.filled - c.T, c.filled);
    const ref = last(attentionReference(full, x.q, x.k, x.v, x.dout).out);
    await tidyAsync(async () => {
      const fullOut = last(await download(attentionWithLse(upload(x.q, shapes.q), upload(x.k, shapes.kv), upload(x.v, shapes.kv), optionsOf(full)).out));
      // The cache has room beyond the filled keys; what lies there must not be read.
      const cache = (src: Float64Array) => {
        const data = randn(c.B * c.KVH * c.capacity * c.D, seed++, 1e3);
        for (let bh = 0; bh < c.B * c.KVH; bh++) data.set(src.subarray(bh * c.filled * c.D, (bh + 1) * c.filled * c.D), bh * c.capacity * c.D);
        return upload(data, [c.B, c.KVH, c.capacity, c.D]);
      };
      const [q, k, v] = [upload(last(x.q), [c.B, c.H, c.T, c.D]), cache(x.k), cache(x.v)];
      const outs: Float64Array[] = [];
      const options = { cacheLength: c.filled, window: c.window, keyRange: optionsOf(full).keyRange, keysPerChunk: c.chunk };
      if (c.D % 4 !== 0) {
        assert.throws(() => attentionDecode(q, k, v, { ...options, variant: 'thread' }), /head dim 6 is not a multiple of 4/);
        assertClose(await download(attentionDecode(q, k, v, options)), ref, 1e-5, `decode ${JSON.stringify(c)} (the device's choice) vs reference`);
        return;
      }
      for (const variant of ['workgroup', 'thread'] as const) {
        const out = attentionDecode(q, k, v, { ...options, variant });
        const ours = await download(out);
        assertClose(ours, ref, 1e-5, `decode (${variant}) ${JSON.stringify(c)} vs reference`);
        assertClose(ours, fullOut, 1e-5, `decode (${variant}) ${JSON.stringify(c)} vs the fused forward's last rows`);
        outs.push(ours);
      }
      // The same scores, weights and output sums; only l's order of addition differs.
      assertClose(outs[1], outs[0], 1e-6, `decode ${JSON.stringify(c)}: the thread variant vs the workgroup's`);
    });
  }
});

/** x rounded to f16, as f32 values, and packed two per u32 word (the f16-storage layout). */
function toF16(x: Float64Array, shape: number[]): { rounded: Float64Array; packed: Tensor } {
  const bits = f32ToF16(Float32Array.from(x));
  const packedShape = [...shape.slice(0, -1), shape[shape.length - 1] / 2];
  return { rounded: Float64Array.from(f16ToF32(bits)), packed: Tensor.fromArray(new Uint32Array(bits.buffer), packedShape, 'u32') };
}

test('f16 storage equals the f32 kernel on f16-rounded inputs (forward and decode)', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: f16 storage not tested'); return; }
  const f16Cases: Case[] = [
    { B: 1, H: 4, KVH: 2, T: 45, D: 16, window: 17 },
    { B: 1, H: 4, KVH: 2, T: 29, D: 256, causal: true },
    { B: 1, H: 2, KVH: 1, T: 23, D: 160, window: 9 },
  ];
  for (const c of f16Cases) {
    const shapes = shapesOf(c);
    const x = inputs(c);
    await tidyAsync(async () => {
      const [q, k, v] = [toF16(x.q, shapes.q), toF16(x.k, shapes.kv), toF16(x.v, shapes.kv)];
      const half = attentionWithLse(q.packed, k.packed, v.packed, optionsOf(c));
      const single = attentionWithLse(upload(q.rounded, shapes.q), upload(k.rounded, shapes.kv), upload(v.rounded, shapes.kv), optionsOf(c));
      const singleOut = await download(single.out);
      // The same f32 arithmetic on the same values: only the loads differ.
      assertClose(await download(half.out), singleOut, 1e-6, `${label(c)} f16-storage out vs f32 kernel`);
      assertClose(await download(half.lse), await download(single.lse), 1e-6, `${label(c)} f16-storage lse vs f32 kernel`);
      // Against the unrounded inputs: each carries a relative rounding error up to 2^-11 ≈ 4.9e-4 (2.7e-4 measured).
      assertClose(await download(half.out), attentionReference(c, x.q, x.k, x.v, x.dout).out, 1e-3, `${label(c)} f16-storage out vs float64 reference`);
      const lastTwo = toF16(sliceRows(x.q, shapes.q, c.T - 2, c.T), [c.B, c.H, 2, c.D]).packed;
      for (const variant of ['workgroup', 'thread'] as const) {
        const decoded = attentionDecode(lastTwo, k.packed, v.packed, { window: c.window, keysPerChunk: 16, variant });
        assertClose(await download(decoded), sliceRows(singleOut, shapes.q, c.T - 2, c.T), 1e-6, `${label(c)} f16-storage decode (${variant}) vs f32 forward rows`);
      }
    });
  }
});

test('fused forward + backward at T = 2048 peaks far below one T×T f32 buffer (16 MiB)', async () => {
  await initGpu();
  const c: Case = { B: 1, H: 1, KVH: 1, T: 2048, D: 16, causal: true };
  const x = inputs(c);
  const shapes = shapesOf(c);
  const [q, k, v] = [upload(x.q, shapes.q, true), upload(x.k, shapes.kv, true), upload(x.v, shapes.kv, true)];
  const dout = upload(x.dout, shapes.q);
  pool.resetPeak();
  const before = pool.liveBytes;
  const out = attention(q, k, v, { causal: true });
  backward(out, dout);
  await q.grad!.toArray();
  const peak = pool.peakBytes - before;
  // out, lse, delta and the three gradients: about 6·T·D floats (0.8 MiB), where a T×T buffer alone is 16 MiB.
  assert.ok(peak < 2 * 2 ** 20, `peak ${peak} bytes during forward + backward`);
  assert.ok(peak >= 4 * 4 * c.T * c.D, `peak ${peak} bytes is below out and three gradients: the pool did not see them`);
  for (const t of [q, k, v, q.grad, k.grad, v.grad, dout, out]) t?.dispose();
});

test('backward is deterministic: two runs give the same bits', async () => {
  await initGpu();
  const c: Case = { B: 1, H: 4, KVH: 1, T: 70, D: 16, causal: true };
  const x = inputs(c);
  const first = await forwardBackward(attention, c, x);
  const second = await forwardBackward(attention, c, x);
  for (const key of ['dq', 'dk', 'dv'] as const) assert.equal(first[key], second[key], key);
});

test('ledger: computed-tile FLOPs, useful FLOPs, and a window that keeps the cost linear in T', async () => {
  await initGpu();
  const dims = { B: 1, H: 2, KVH: 1, T: 100, S: 100, D: 16 };
  const causal: AttentionMask = { causal: true, window: 0, positionOffset: 0, hasKeyRange: false };
  // The forward this device runs (on lavapipe the rows kernel: Q Kᵀ over BR × BC tiles, P V over BR × BCV).
  const tiles = attentionKernels(dims.D, { mixedPrecision: false }).forward;
  await tidyAsync(async () => {
    ledger.reset();
    attention(upload(randn(2 * 100 * 16, seed++), [1, 2, 100, 16]), upload(randn(100 * 16, seed++), [1, 1, 100, 16]), upload(randn(100 * 16, seed++), [1, 1, 100, 16]), { causal: true });
    const charged = ledger.byOp().find((r) => r.key === 'attentionForward')!.flops;
    const entries = (BC: number) => tileWork(100, 100, tiles.BR, BC, causal).entries;
    assert.is(charged, 2 * 16 * 2 * (entries(tiles.BC) + entries(tiles.BCV ?? tiles.BC)));
    const useful = attentionUsefulFlops(dims, { causal: true }).forward;
    assert.is(useful, 4 * 16 * 2 * (100 * 101) / 2);
    assert.ok(useful < charged && charged < 1.5 * useful, `useful ${useful}, charged ${charged}`);
  });
  // Padding in attentionUsefulFlops: the rows see only [start, end).
  assert.is(attentionUsefulFlops({ ...dims, B: 2, H: 1, T: 4, S: 4 }, { keyRanges: [[1, 4], [0, 2]] }).forward, 4 * 16 * (4 * 3 + 4 * 2));
  // Tiles outside the window are skipped: at W = 64, doubling T doubles the work; causal alone quadruples it.
  const work = (T: number, m: AttentionMask) => tileWork(T, T, tiles.BR, tiles.BC, m).entries;
  const windowed = { ...causal, window: 64 };
  assert.ok(Math.abs(work(8192, windowed) / work(4096, windowed) - 2) < 0.02, 'windowed work grows with T');
  assert.ok(Math.abs(work(8192, causal) / work(4096, causal) - 4) < 0.02, 'causal work grows with T²');
});

test('bad arguments are refused with the shapes in the message', async () => {
  await initGpu();
  await tidyAsync(async () => {
    const q = Tensor.zeros([1, 3, 4, 8]);
    const k = Tensor.zeros([1, 2, 4, 8]);
    assert.throws(() => attention(q, k, k), /multiple of kv heads/);
    assert.throws(() => attention(k, k, k, { window: 3, causal: false }), /implies causal/);
    assert.throws(() => attention(k, k, k, { keyRange: Tensor.zeros([1, 2]) }), /keyRange must be i32/);
    assert.throws(() => attention(Tensor.zeros([1, 1, 4, 264]), Tensor.zeros([1, 1, 4, 264]), Tensor.zeros([1, 1, 4, 264])), /head dim 264 > 256/);
    assert.throws(() => attentionDecode(k, k, k, { cacheLength: 9 }), /cacheLength 9/);
  });
});

test.run();
