// Matmul throughput of each kernel variant: square sizes and Pythia-160m's projections at 512 tokens on every tile,
// where a bf16-stored B (a frozen weight) is also timed on the default tile; and Mistral-7B-shaped decoding
// (M = 1 or 8 rows times a 4096-wide weightᵀ, as linear() runs it) on the small-M kernel's variants and on the
// default tile, with f32 and bf16 weights; and Mistral-7B's grouped decode products (q | k | v, gate | up and SwiGLU in
// one small-M dispatch: linearGroup) against the separate ones; and the demo's small products (`small`: the lavapipe
// table's small-shape bucket, weight gradients and a 19-token head among them). A variant with a baseline also shows
// its time as a multiple of it.
// Prints ms per call, GFLOP/s and GB/s (the kernel's analytic cost over the host-clocked time of a batch of calls).
// The rows kernel (matmul_rows.wgsl, for SIMD CPUs) and the vectorised variants (matmul_vec4.wgsl, for GPUs) are timed
// beside the tiles wherever the device and shape allow them.
// Usage: npx tsx bench/matmul.ts [--json] [--write-table] [substrings of case names, e.g. pythia or decode: any of them]
//   --json: also one JSON line per case and variant: {"case", "variant", "ms", "gflops"}.
//   --write-table: rewrites this device class's row of kernels/matmul_tiles.json with the fastest tile, rows and vec4
//   variant per shape bucket (geometric mean of the times of the square, Pythia and small cases in the bucket).
//   --max-time=S: benny's time per case and variant (default 1.5 s); on a GPU, 0.3 s measures every variant of the
//   square and Pythia cases in about 2 minutes.
import b from 'benny';
import { writeFileSync } from 'node:fs';
import { noGrad } from '../engine/autodiff.ts';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { subgroupDevice } from '../engine/gpu.ts';
import { swiglu } from '../engine/ops/activations.ts';
import { linear, linearGroup, matmulDeviceClass, type LinearGroupForm } from '../engine/ops/matmul.ts';
import type { KernelCall } from '../kernels/spec.ts';
import type { Activation } from '../kernels/activation.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { seconds } from './timing.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { bytesPerElement, type FloatDType } from '../kernels/dtype.ts';
import { DEFAULT_TILE, MATMUL_ROWS_VARIANTS, MATMUL_TABLE, MATMUL_TABLE_URL, MATMUL_TILES, matmulCall, matmulRowsCall, matmulRowsUnfit, type MatmulChoice, type MatmulDeviceClass, type MatmulShape } from '../kernels/matmul.ts';
import { SMALL_M_VARIANTS, matmulSmallMCall, matmulSmallMGroupCall, smallMVariantFor, type SmallMGroup } from '../kernels/matmul_small_m.ts';
import { MATMUL_VEC4_VARIANTS, matmulVec4Call, matmulVec4Unfit } from '../kernels/matmul_vec4.ts';

/** run: the variant's products through the ops (a grouped case), where call then gives only their cost. */
interface Variant { name: string; dtypeB: FloatDType; call: (s: MatmulShape) => KernelCall; baseline?: string; unfit?: (s: MatmulShape) => string | null; run?: (a: Tensor, weights: Tensor[]) => unknown }
/**
 * transB: B is stored N×K (a weight in transformers' layout, as linear() multiplies it); transA: A is stored K×M (a
 * weight gradient's dYᵀ·X); widths: a grouped case's weights [width, K], N their product's columns; bias, activation:
 * a linear's bias and activation applied in the store (the epilogue cases, which choose a bucket's rowsEpilogue).
 */
interface Case { name: string; M: number; N: number; K: number; transA?: boolean; transB: boolean; widths?: number[]; bias?: boolean; activation?: Activation; variants: Variant[] }

const DEFAULT_TILE_NAME = Object.entries(MATMUL_TILES).find(([, t]) => t === DEFAULT_TILE)![0];
const smallMName = (device: MatmulDeviceClass, M: number) => Object.entries(SMALL_M_VARIANTS).find(([, v]) => v === smallMVariantFor(MATMUL_TABLE, device, M))![0];
const DTYPES_B: FloatDType[] = ['f32', 'bf16'];

const TILES: Variant[] = Object.entries(MATMUL_TILES).map(([name, tile]) => ({ name, dtypeB: 'f32', call: (s) => matmulCall(deviceLimits(), s, tile) }));
const ROWS: Variant[] = Object.entries(MATMUL_ROWS_VARIANTS).map(([name, v]) => ({
  name, dtypeB: 'f32', call: (s) => matmulRowsCall(deviceLimits(), subgroupDevice(), s, v), unfit: (s) => matmulRowsUnfit(deviceLimits(), subgroupDevice(), s, v),
}));
const VEC4: Variant[] = Object.entries(MATMUL_VEC4_VARIANTS).map(([name, v]) => ({
  name, dtypeB: 'f32', call: (s) => matmulVec4Call(deviceLimits(), s, v), unfit: (s) => matmulVec4Unfit(deviceLimits(), s, v),
}));
const BF16_B: Variant = { name: 'bf16 B', dtypeB: 'bf16', call: (s) => matmulCall(deviceLimits(), s), baseline: DEFAULT_TILE_NAME };

/** The default tile and every small-M variant on a weight stored as dtypeB, each timed against that tile. */
function decodeVariants(dtypeB: FloatDType): Variant[] {
  const tiled = `tiled ${dtypeB}`;
  return [
    { name: tiled, dtypeB, call: (s) => matmulCall(deviceLimits(), s) },
    ...Object.entries(SMALL_M_VARIANTS).map(([name, v]): Variant => ({ name: `small-M ${name} ${dtypeB}`, dtypeB, call: (s) => matmulSmallMCall(deviceLimits(), s, v), baseline: tiled })),
  ];
}

/** Three widths: q | k | v; two: gate | up and SwiGLU. Both variants are charged the grouped call's cost, the parts'. */
function groupedVariants(widths: number[]): Variant[] {
  const form: LinearGroupForm = widths.length === 3 ? 'concatenated' : 'swiglu';
  const group: SmallMGroup = form === 'concatenated' ? { form, widths: [widths[0], widths[1], widths[2]] } : { form: 'gated', width: widths[0], fn: 'silu', op: 'swiglu' };
  const call = (s: MatmulShape) => matmulSmallMGroupCall(deviceLimits(), s.M, s.K, s.dtypeB, group, smallMVariantFor(MATMUL_TABLE, matmulDeviceClass(gpu().adapterInfo), s.M));
  return [
    { name: 'separate bf16', dtypeB: 'bf16', call, run: (a, ws) => (form === 'concatenated' ? ws.map((w) => linear(a, w)) : swiglu(linear(a, ws[0]), linear(a, ws[1]))) },
    { name: 'grouped bf16', dtypeB: 'bf16', call, run: (a, ws) => linearGroup(a, ws, form), baseline: 'separate bf16' },
  ];
}

const TOKENS = 512;
const CASES: Case[] = [
  ...[256, 512, 1024, 2048].map((n) => ({ name: `square ${n}`, M: n, N: n, K: n, transB: false, variants: [...TILES, ...ROWS, ...VEC4] })),
  ...[
    { name: 'pythia qkv', M: TOKENS, N: 2304, K: 768 },
    { name: 'pythia attn out', M: TOKENS, N: 768, K: 768 },
    { name: 'pythia mlp up', M: TOKENS, N: 3072, K: 768 },
    { name: 'pythia mlp down', M: TOKENS, N: 768, K: 3072 },
    { name: 'pythia lm head', M: TOKENS, N: 50304, K: 768 },
  ].map((c) => ({ ...c, transB: false, variants: [...TILES, ...ROWS, ...VEC4, BF16_B] })),
  // Linears with a bias, as a training forward runs them (Pythia's, and the demo's below).
  ...[
    { name: 'pythia qkv + bias', M: TOKENS, N: 2304, K: 768 },
    { name: 'pythia attn out + bias', M: TOKENS, N: 768, K: 768 },
  ].map((c) => ({ ...c, transB: true, bias: true, variants: ROWS })),
  // The demo's products (16 sequences of 20 tokens, hidden 64, MLP 256, a vocabulary of 19): the small shapes'
  // bucket, weight gradients (Aᵀ·B) and the head's odd sizes included, where the rows kernel does not fit.
  ...[
    { name: 'small qkv 320 x 64 x 192', M: 320, N: 192, K: 64, transB: true },
    { name: 'small mlp down 320 x 256 x 64', M: 320, N: 64, K: 256, transB: true },
    { name: 'small qkv dW 192 x 320 x 64', M: 192, N: 64, K: 320, transA: true, transB: false },
    { name: 'small head 320 x 64 x 19', M: 320, N: 19, K: 64, transB: true },
    { name: 'small head dW 19 x 320 x 64', M: 19, N: 64, K: 320, transA: true, transB: false },
    { name: 'small head dX 320 x 19 x 64', M: 320, N: 64, K: 19, transB: false },
  ].map((c) => ({ ...c, variants: [...TILES, ...ROWS] })),
  ...[
    { name: 'small qkv + bias 320 x 64 x 192', M: 320, N: 192, K: 64 },
    { name: 'small mlp up + bias 320 x 64 x 256', M: 320, N: 256, K: 64 },
    { name: 'small mlp down + bias 320 x 256 x 64', M: 320, N: 64, K: 256 },
  ].map((c) => ({ ...c, transB: true, bias: true, variants: ROWS })),
  // An evaluation's MLP up, its GELU in the store (off the tape).
  { name: 'small mlp up + bias, gelu 320 x 64 x 256', M: 320, N: 256, K: 64, transB: true, bias: true, activation: 'gelu', variants: ROWS },
  // Mistral-7B's q and o projections (N 4096) and MLP gate and up (N 14336), for batch 1 and batch 8 decoding.
  ...[1, 8].flatMap((M) => [4096, 14336].map((N) => ({
    name: `decode M=${M} N=${N}`, M, N, K: 4096, transB: true, variants: DTYPES_B.flatMap(decodeVariants),
  }))),
  // The demo's rollouts once compacted to 8 rows or fewer: its qkv (N 192) and MLP down (K 256).
  ...[1, 3, 8].flatMap((M) => [[192, 64], [64, 256]].map(([N, K]) => ({
    name: `decode M=${M} N=${N} K=${K}`, M, N, K, transB: true, variants: DTYPES_B.flatMap(decodeVariants),
  }))),
  // Mistral-7B's q | k | v and gate | up, grouped or separate.
  ...[1, 8].flatMap((M) => [[4096, 1024, 1024], [14336, 14336]].map((widths) => ({
    name: `decode ${widths.length === 3 ? 'qkv' : 'gate up'} M=${M}`, M, N: widths.reduce((n, w) => n + w), K: 4096, transB: true, widths, variants: groupedVariants(widths),
  }))),
];

const MAX_SECONDS_PER_CALL = 20; // slower variants are skipped (lavapipe at 2048)
const SECONDS_PER_SAMPLE = 0.3; // dispatches are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 200;

async function main(): Promise<void> {
  const { adapterInfo, limits } = gpu();
  const device = matmulDeviceClass(adapterInfo);
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor}); default tile ${DEFAULT_TILE_NAME}; `
    + `the table's small-M variant for ${device}: ${smallMName(device, 1)} for one row, ${smallMName(device, 8)} for more`);
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const writeTable = args.includes('--write-table');
  const maxTime = Number(args.find((a) => a.startsWith('--max-time='))?.slice('--max-time='.length) ?? 1.5);
  if (!(maxTime > 0)) throw new Error(`--max-time=S wants a positive number of seconds, got ${args.find((a) => a.startsWith('--max-time='))}`);
  const only = args.filter((a) => !a.startsWith('--'));
  const measured: { c: Case; variant: string; seconds: number }[] = [];
  const rows: string[] = [];
  const report = (row: string) => { rows.push(row); console.log(row); };
  for (const c of CASES.filter((c) => only.length === 0 || only.some((o) => c.name.includes(o)))) {
    const a = Tensor.zeros([c.M, c.K]);
    const out = Tensor.empty([c.M, c.N]);
    const bias = c.bias ? Tensor.zeros([c.N]) : null;
    const widths = c.widths ?? [c.N];
    const weights = new Map<FloatDType, Tensor[]>();
    const cases = [];
    const costs = new Map<string, { flops: number; bytes: number; calls: number; baseline?: string }>();
    for (const v of c.variants) {
      const largest = Math.max(4 * c.M * c.K, bytesPerElement(v.dtypeB) * c.K * Math.max(...widths), 4 * c.M * c.N);
      if (largest > limits.maxStorageBufferBindingSize) {
        report(`${c.name.padEnd(18)} ${v.name.padEnd(24)} skipped: an operand of ${largest} bytes exceeds maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`);
        continue;
      }
      const shape: MatmulShape = { batch: 1, M: c.M, N: c.N, K: c.K, strideA: 0, strideB: 0, transA: c.transA ?? false, transB: c.transB, hasBias: bias !== null, activation: c.activation, dtypeA: 'f32', dtypeB: v.dtypeB };
      const unfit = v.unfit?.(shape);
      if (unfit) {
        report(`${c.name.padEnd(18)} ${v.name.padEnd(24)} skipped: ${unfit}`);
        continue;
      }
      if (!weights.has(v.dtypeB)) weights.set(v.dtypeB, widths.map((n) => Tensor.zeros(c.transB ? [n, c.K] : [c.K, n], v.dtypeB)));
      const ws = weights.get(v.dtypeB)!;
      const call = v.call(shape);
      const run = v.run ? () => tidy(() => { noGrad(() => v.run!(a, ws)); }) : () => launch(call, [a, ws[0], bias, null], [out]);
      // Compiles the variant: a grouped case's by running it, else at N 4 (its constants do not depend on N).
      await seconds(v.run ? run : () => launch(v.call({ ...shape, N: 4 }), [a, ws[0], bias, null], [out]));
      const once = await seconds(run);
      if (once > MAX_SECONDS_PER_CALL) {
        report(`${c.name.padEnd(18)} ${v.name.padEnd(24)} skipped: ${once.toFixed(1)} s per call`);
        continue;
      }
      const calls = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
      costs.set(v.name, { flops: call.cost.flops, bytes: call.cost.bytesRead + call.cost.bytesWritten, calls, baseline: v.baseline });
      cases.push(b.add(v.name, async () => { await seconds(run, calls); }));
    }
    if (cases.length > 0) {
      const summary = await b.suite(`${c.name} [${c.M}x${c.K}]x[${c.K}x${c.N}]`, ...cases, b.configure({ cases: { minSamples: 2, maxTime } }));
      const seconds = new Map(summary.results.map((r) => [r.name, r.details.mean / costs.get(r.name)!.calls]));
      for (const r of summary.results) {
        const k = costs.get(r.name)!;
        const t = seconds.get(r.name)!;
        const baseline = k.baseline && seconds.get(k.baseline);
        const ratio = !k.baseline ? '' : baseline ? `  ${(t / baseline).toFixed(3)}x the time of ${k.baseline}` : `  (no ${k.baseline} time)`;
        measured.push({ c, variant: r.name, seconds: t });
        if (json) console.log(JSON.stringify({ case: c.name, variant: r.name, M: c.M, N: c.N, K: c.K, ms: +(t * 1e3).toFixed(3), gflops: +(k.flops / t / 1e9).toFixed(3) }));
        report(`${c.name.padEnd(18)} ${r.name.padEnd(24)} ${(t * 1e3).toFixed(2).padStart(10)} ms ${(k.flops / t / 1e9).toFixed(2).padStart(9)} GFLOP/s ${(k.bytes / t / 1e9).toFixed(2).padStart(8)} GB/s  (${r.samples} samples of ${k.calls} calls)${ratio}`);
      }
    }
    for (const t of [a, out, bias, ...[...weights.values()].flat()]) t?.dispose();
  }
  console.log(`\n${rows.join('\n')}`);
  if (writeTable) writeChoices(device, measured);
}

/**
 * This device class's buckets (kept), each with the tile and the rows variant of the least geometric-mean time, and
 * its small-M variants: the least geometric-mean time over the decode cases of one row (and of more), both weight dtypes.
 */
function writeChoices(device: MatmulDeviceClass, measured: { c: Case; variant: string; seconds: number }[]): void {
  const inBucket = (bucket: MatmulChoice, i: number, buckets: MatmulChoice[]) => (c: Case) => {
    const mnk = c.M * c.N * c.K;
    const lower = i === 0 ? 0 : buckets[i - 1].maxMNK!;
    return mnk > lower && (bucket.maxMNK === null || mnk <= bucket.maxMNK);
  };
  // variantsOf: the benchmark variants a candidate ran as (a small-M variant once per weight dtype).
  const fastest = (names: string[], cases: Case[], variantsOf = (name: string) => [name]) => {
    const timesOf = names.map((name) => cases.flatMap((c) => variantsOf(name).map((v) => measured.find((m) => m.c === c && m.variant === v)?.seconds)));
    // A (case, variant) slot that no candidate ran (an operand over the binding limit) counts for none.
    const ran = (timesOf[0] ?? []).map((_, j) => timesOf.some((t) => t[j] !== undefined));
    let best: { name: string; score: number } | null = null;
    for (const [i, name] of names.entries()) {
      const times = timesOf[i].filter((_, j) => ran[j]);
      if (times.length === 0 || times.some((t) => t === undefined)) continue; // not measured on every case of the bucket
      const score = times.reduce<number>((sum, t) => sum + Math.log(t!), 0) / times.length;
      if (!best || score < best.score) best = { name, score };
    }
    return best?.name;
  };
  const table = structuredClone(MATMUL_TABLE);
  table[device] = table[device].map((bucket, i, buckets) => {
    const inThis = [...new Set(measured.map((m) => m.c))].filter((c) => !c.name.startsWith('decode') && inBucket(bucket, i, buckets)(c));
    // The epilogue cases choose rowsEpilogue, the others the rest; a kind the run did not measure keeps its choice.
    const epilogueCases = inThis.filter((c) => c.bias || c.activation), cases = inThis.filter((c) => !c.bias && !c.activation);
    const rowsEpilogue = (fastest(Object.keys(MATMUL_ROWS_VARIANTS), epilogueCases) ?? bucket.rowsEpilogue) as MatmulChoice['rowsEpilogue'];
    // Only beside a kept rows variant: the epilogue cases run no tile to say the rows kernel beats it.
    const withEpilogue = ({ rowsEpilogue: _, ...b }: MatmulChoice): MatmulChoice => (b.rows && rowsEpilogue && rowsEpilogue !== b.rows ? { ...b, rowsEpilogue } : b);
    if (cases.length === 0) return withEpilogue(bucket);
    const tile = (fastest(Object.keys(MATMUL_TILES), cases) ?? bucket.tile) as MatmulChoice['tile'];
    const rows = fastest(Object.keys(MATMUL_ROWS_VARIANTS), cases) as MatmulChoice['rows'];
    const timeOf = (c: Case, variant: string) => measured.find((m) => m.c === c && m.variant === variant)?.seconds;
    const rowsTime = rows && Math.min(...cases.map((c) => (timeOf(c, rows) ?? Infinity) / (timeOf(c, tile) ?? 0)));
    // Keep the rows kernel only where it beats the tile on some case of the bucket (where it does not fit, the tile runs).
    const keptRows = rows && rowsTime! < 1 ? rows : undefined;
    // Keep the vec4 kernel where it beats what would run without it (the kept rows kernel where it ran, else the tile)
    // on the geometric mean of the bucket's cases that both ran.
    const vec4 = fastest(Object.keys(MATMUL_VEC4_VARIANTS), cases) as MatmulChoice['vec4'];
    const ratios = !vec4 ? [] : cases.flatMap((c) => {
      const without = (keptRows && timeOf(c, keptRows)) || timeOf(c, tile);
      const t = timeOf(c, vec4);
      return t && without ? [Math.log(t / without)] : [];
    });
    const keptVec4 = ratios.length > 0 && ratios.reduce((x, y) => x + y, 0) < 0 ? vec4 : undefined;
    return withEpilogue({ maxMNK: bucket.maxMNK, ...(keptRows ? { rows: keptRows } : {}), ...(keptVec4 ? { vec4: keptVec4 } : {}), tile });
  });
  const decodeCases = (rows: (M: number) => boolean) => [...new Set(measured.map((m) => m.c))].filter((c) => c.name.startsWith('decode') && !c.widths && rows(c.M));
  const smallM = (cases: Case[], kept: string) => (cases.length === 0 ? kept
    : fastest(Object.keys(SMALL_M_VARIANTS), cases, (name) => DTYPES_B.map((dtype) => `small-M ${name} ${dtype}`)) ?? kept);
  table.smallM[device] = { oneRow: smallM(decodeCases((M) => M === 1), table.smallM[device].oneRow), fewRows: smallM(decodeCases((M) => M > 1), table.smallM[device].fewRows) };
  writeFileSync(MATMUL_TABLE_URL, tableJson(table));
  console.log(`${device}: ${JSON.stringify(table[device])}, small-M ${JSON.stringify(table.smallM[device])} written to kernels/matmul_tiles.json`);
}

/** The table as the file keeps it: one line per bucket and per small-M entry. */
function tableJson(table: typeof MATMUL_TABLE): string {
  const flat = (v: unknown) => JSON.stringify(v).replace(/":/g, '": ').replace(/,"/g, ', "').replace(/^\{/, '{ ').replace(/\}$/, ' }');
  const entries = Object.entries(table).map(([key, value]) => {
    if (typeof value === 'string') return `  "${key}": ${JSON.stringify(value)}`;
    if (Array.isArray(value)) return `  "${key}": [\n${value.map((b) => `    ${flat(b)}`).join(',\n')}\n  ]`;
    return `  "${key}": {\n${Object.entries(value).map(([k, v]) => `    "${k}": ${flat(v)}`).join(',\n')}\n  }`;
  });
  return `{\n${entries.join(',\n')}\n}\n`;
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
