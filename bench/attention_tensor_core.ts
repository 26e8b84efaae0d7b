// The tensor-core attention forward on a GPU, in one run: the adapter's subgroup-matrix configs, correctness of
// every (matrix shape, key layout) against the f32 fused kernel on the same f16-rounded inputs (relErr of out
// and lse, PASS/FAIL), then the forward at B4 H16 T2048 D64 causal: the f32 fused kernel (f32 and f16 inputs)
// and each tensor-core variant, host-clocked over 20 calls after a warm-up. Exits non-zero if a check fails.
// Each step catches its own errors, so one failure still prints the rest.
// Usage: node --import tsx bench/attention_tensor_core.ts
// Without JUICE_DAWN_FLAGS it runs with the flags that expose f16 and the subgroup matrices on NVIDIA,
// "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia" (add disable_robustness for the tuned
// figures of bench/RESULTS.md; the f32 baseline runs in the same process either way).
// JUICE_BENCH_EMULATE=1 runs the script on a device without subgroup matrices (lavapipe) through the emulated
// kernels, with smaller shapes: it checks the script, not the timings, before spending device time.
import { initGpu, releaseGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { attentionSetup, attentionTensorCore, attentionUsefulFlops, attentionWithLse, subgroupMatrixDevice, type AttentionOptions } from '../engine/ops/attention.ts';
import { sync } from '../engine/runtime.ts';
import { f16ToF32, f32ToF16 } from '../kernels/dtype.ts';
import { Tensor, tidy, tidyAsync } from '../engine/tensor.ts';
import { seconds } from './timing.ts';
import { emulatedTensorCoreCall } from '../test/support/subgroup_matrix_emulation.ts';
import {
  planTensorCore, tensorCoreDeviceUnsupported, tensorCoreLayout, tensorCoreShapes, tensorCoreVariant,
  type MatrixShape,
} from '../kernels/attention_forward_tensor_core.ts';

const EMULATE = process.env.JUICE_BENCH_EMULATE === '1';
const NEEDED_FLAGS = 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia';

// P is rounded to f16 before P V (relative error up to 2^-11 per weight); the scores are exact f16 products
// summed in f32 on both sides (see test/attention_tensor_core.test.ts).
const OUT_TOL = 2e-3;
const LSE_TOL = 1e-5;
const CALLS = 20;

const lines: string[] = [];
let failures = 0;
function say(line: string): void { lines.push(line); console.log(line); }
function fail(what: string, e: unknown): void {
  failures++;
  const message = e instanceof Error ? e.message : String(e);
  say(`FAIL ${what}: ${message.length > 3000 ? `${message.slice(0, 3000)} ...` : message}`);
}

/** Runs a step; a GPU error it left behind (a rejected shader surfaces at the next sync) is charged to it too. */
async function step(what: string, run: () => Promise<void>): Promise<void> {
  try { await run(); } catch (e) { fail(what, e); }
  try { await sync(); } catch (e) { fail(`${what} (error at the next sync)`, e); }
}

/** Cheap deterministic values in [-scale, scale) (bench/gpu.ts's pattern), rounded to f16. */
function f16Pattern(n: number, seed: number, scale: number): Uint16Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; out[i] = ((x >>> 8) / 8388608 - 1) * scale; }
  return f32ToF16(out);
}

interface Case { B: number; H: number; KVH: number; T: number; S?: number; D: number; opts: AttentionOptions; keyRanges?: [number, number][] }

function label(c: Case): string {
  const o = c.opts;
  return `B${c.B} H${c.H}/${c.KVH} T${c.T} S${c.S ?? c.T} D${c.D}${o.causal ? ' causal' : ''}${o.window ? ` W${o.window}` : ''}`
    + `${o.positionOffset ? ` offset ${o.positionOffset}` : ''}${c.keyRanges ? ' padded' : ''}`;
}

/** The same f16 values as f32 tensors (for the f32 kernel) and as f16 tensors. */
function inputs(c: Case, seed: number) {
  const S = c.S ?? c.T;
  const shapes = [[c.B, c.H, c.T, c.D], [c.B, c.KVH, S, c.D], [c.B, c.KVH, S, c.D]];
  const bits = shapes.map((s, i) => f16Pattern(s.reduce((a, b) => a * b, 1), seed + i, 2));
  return {
    f32: bits.map((b, i) => Tensor.fromArray(f16ToF32(b), shapes[i]!)) as [Tensor, Tensor, Tensor],
    f16: bits.map((b, i) => Tensor.fromBits(b, shapes[i]!, 'f16')) as [Tensor, Tensor, Tensor],
  };
}

/** ‖ours − ref‖ / ‖ref‖ over the finite reference entries, and the count of infinities that differ. */
function compare(ours: Float32Array, ref: Float32Array): { relErr: number; infMismatch: number } {
  let num = 0, den = 0, infMismatch = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(ref[i]!)) { if (ours[i] !== ref[i]) infMismatch++; continue; }
    const d = ours[i]! - ref[i]!;
    num += d * d; den += ref[i]! * ref[i]!;
  }
  return { relErr: Number.isFinite(num) ? Math.sqrt(num / Math.max(den, 1e-30)) : Infinity, infMismatch };
}

function shapeName(s: MatrixShape): string { return `M${s.M}N${s.N}K${s.K}`; }

/** The device's f16 -> f32 matrix shapes (emulated: two of the H100's, in subgroups of 32). */
function shapes(): MatrixShape[] { return EMULATE ? [{ M: 16, N: 16, K: 16 }, { M: 16, N: 8, K: 16 }] : tensorCoreShapes(subgroupMatrixDevice()); }

function plan(D: number, shape: MatrixShape) {
  if (!EMULATE) return tensorCoreVariant(subgroupMatrixDevice(), D, shape);
  const limits = deviceLimits();
  return planTensorCore(D, shape, { subgroupSize: 32, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxInvocations: limits.maxComputeInvocationsPerWorkgroup });
}

/** attentionTensorCore, or its emulated kernel. */
function tensorCore(x: [Tensor, Tensor, Tensor], opts: AttentionOptions, shape: MatrixShape): { out: Tensor; lse: Tensor } {
  if (!EMULATE) return attentionTensorCore(...x, { ...opts, shape });
  const { variant, reason } = plan(x[0].shape[3]!, shape);
  if (!variant) throw new Error(reason);
  const { dims, mask, scale, keyRange } = attentionSetup(...x, opts, 'f16');
  const out = Tensor.empty([dims.B, dims.H, dims.T, dims.D]);
  const lse = Tensor.empty([dims.B, dims.H, dims.T]);
  launch(emulatedTensorCoreCall(dims, mask, scale, variant), [...x, keyRange], [out, lse]);
  return { out, lse };
}

function variantName(D: number, shape: MatrixShape): string {
  const { variant, reason } = plan(D, shape);
  if (!variant) return `${shapeName(shape)} (no variant: ${reason})`;
  const L = tensorCoreLayout(variant);
  return `${shapeName(shape)} (${L.NSG}x${L.SG} lanes, BR${L.BR} BC${L.BC}, ${L.bytes} B)`;
}

const CHECKS: Case[] = [
  { B: 1, H: 2, KVH: 2, T: 1, D: 64, opts: {} },
  { B: 2, H: 8, KVH: 2, T: 300, D: 64, opts: { causal: true } },
  { B: 1, H: 4, KVH: 4, T: 129, D: 128, opts: { window: 50 } },
  { B: 2, H: 4, KVH: 1, T: 77, S: 120, D: 80, opts: { causal: true, positionOffset: 43 }, keyRanges: [[10, 120], [0, 90]] },
  { B: 1, H: 2, KVH: 2, T: 64, D: 256, opts: { causal: true } },
  { B: 1, H: 2, KVH: 1, T: 50, S: 70, D: 16, opts: { scale: 0.3 } },
];

async function checks(): Promise<void> {
  let seed = 1;
  for (const c of CHECKS) {
    await tidyAsync(async () => {
      const x = inputs(c, seed += 3);
      const opts = { ...c.opts, keyRange: c.keyRanges ? Tensor.fromArray(c.keyRanges.flat(), [c.B, 2], 'i32') : undefined };
      let ref: { out: Float32Array; lse: Float32Array } | null = null;
      await step(`reference ${label(c)}`, async () => {
        const r = attentionWithLse(...x.f32, opts);
        ref = { out: (await r.out.toArray()) as Float32Array, lse: (await r.lse.toArray()) as Float32Array };
      });
      if (!ref) return;
      const { out: refOut, lse: refLse } = ref;
      for (const shape of shapes()) {
        const what = `check ${label(c)} ${variantName(c.D, shape)}`;
        if (EMULATE && !plan(c.D, shape).variant) { say(`skip ${what}`); continue; }
        await step(what, async () => {
          const r = tensorCore(x.f16, opts, shape);
          const out = compare((await r.out.toArray()) as Float32Array, refOut);
          const lse = compare((await r.lse.toArray()) as Float32Array, refLse);
          const ok = out.relErr <= OUT_TOL && lse.relErr <= LSE_TOL && lse.infMismatch === 0 && out.infMismatch === 0;
          if (!ok) failures++;
          say(`${ok ? 'PASS' : 'FAIL'} ${what}: out relErr ${out.relErr.toExponential(2)}, lse relErr ${lse.relErr.toExponential(2)}, -inf mismatches ${lse.infMismatch}`);
        });
      }
    });
  }
}

/** Mean seconds per call of run(), after one warm-up call (pipeline compilation). */
async function timeCalls(run: () => void, calls: number): Promise<number> {
  await seconds(run);
  return (await seconds(run, calls)) / calls;
}

async function timing(): Promise<void> {
  const c: Case = EMULATE ? { B: 1, H: 2, KVH: 2, T: 256, D: 64, opts: { causal: true } } : { B: 4, H: 16, KVH: 16, T: 2048, D: 64, opts: { causal: true } };
  const x = inputs(c, 100);
  const useful = attentionUsefulFlops({ B: c.B, H: c.H, KVH: c.KVH, T: c.T, S: c.T, D: c.D }, { causal: true }).forward;
  const report = (what: string, s: number) => say(`time ${label(c)} ${what.padEnd(62)} ${(s * 1e3).toFixed(3).padStart(9)} ms  ${(useful / s / 1e12).toFixed(2).padStart(6)} TFLOP/s useful`);
  let refOut: Float32Array | null = null;
  await step('time f32 fused, f32 inputs', async () => {
    report('f32 fused kernel, f32 inputs', await timeCalls(() => tidy(() => { attentionWithLse(...x.f32, c.opts); }), CALLS));
    refOut = await tidyAsync(async () => (await attentionWithLse(...x.f32, c.opts).out.toArray()) as Float32Array);
  });
  await step('time f32 fused, f16 inputs', async () => {
    report('f32 fused kernel, f16 inputs', await timeCalls(() => tidy(() => { attentionWithLse(...x.f16, c.opts); }), CALLS));
  });
  for (const shape of shapes()) {
    const name = `tensor cores ${variantName(c.D, shape)}`;
    await step(`time ${name}`, async () => {
      const s = await timeCalls(() => tidy(() => { tensorCore(x.f16, c.opts, shape); }), CALLS);
      const err = refOut ? compare(await tidyAsync(async () => (await tensorCore(x.f16, c.opts, shape).out.toArray()) as Float32Array), refOut) : null;
      report(name, s);
      if (err) {
        const ok = err.relErr <= OUT_TOL;
        if (!ok) failures++;
        say(`${ok ? 'PASS' : 'FAIL'} check ${label(c)} ${name}: out relErr ${err.relErr.toExponential(2)}`);
      }
    });
  }
  for (const t of [...x.f32, ...x.f16]) t.dispose();
}

async function main(): Promise<void> {
  if (!process.env.JUICE_DAWN_FLAGS?.trim()) process.env.JUICE_DAWN_FLAGS = NEEDED_FLAGS;
  const g = await initGpu();
  const info = g.adapterInfo;
  say(`device: ${info.description} (${info.vendor}, ${info.architecture}); subgroups ${info.subgroupMinSize}..${info.subgroupMaxSize}`);
  say(`features: ${[...g.features].join(', ')}; flags: ${g.dawnFlags.join(' ') || 'none'}`);
  say(`subgroupMatrixConfigs: ${info.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} M${c.M} N${c.N} K${c.K}`).join('; ') || 'none'}`);
  const unsupported = EMULATE ? null : tensorCoreDeviceUnsupported(subgroupMatrixDevice());
  if (EMULATE) say('EMULATED subgroup matrices (JUICE_BENCH_EMULATE=1): a check of this script, not of the tensor cores; timings mean nothing');
  if (unsupported) {
    fail('tensor cores', `${unsupported}. The flags needed on NVIDIA: JUICE_DAWN_FLAGS="${NEEDED_FLAGS}".`);
  } else {
    say(`tensor-core shapes (f16 x f16 -> f32, largest first): ${shapes().map(shapeName).join(', ')}`);
    const t0 = performance.now();
    await checks();
    say(`(checks: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const t1 = performance.now();
    await step('timing', timing);
    say(`(timing: ${((performance.now() - t1) / 1000).toFixed(1)} s)`);
  }
  say(failures ? `${failures} FAILED` : 'ALL PASS');
  console.log(`\nsummary\n${lines.filter((l) => !l.startsWith('PASS')).join('\n')}`);
  releaseGpu();
  process.exitCode = failures ? 1 : 0;
}

await main();
