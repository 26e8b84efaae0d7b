// Matmul throughput of each tile variant: square sizes and Pythia-160m's projections at 512 tokens, where a
// bf16-stored B (a frozen weight) is also timed on the default tile, with its time as a multiple of f32's.
// Prints ms per call, GFLOP/s and GB/s (the kernel's analytic cost over the host-clocked time of a batch of calls).
// Usage: npx tsx bench/matmul.ts [substring of case names, e.g. pythia]
import b from 'benny';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { launch } from '../engine/launch.ts';
import { sync } from '../engine/runtime.ts';
import { Tensor, bytesPerElement } from '../engine/tensor.ts';
import { DEFAULT_TILE, MATMUL_TILES, matmulCall, type FloatStorage, type MatmulShape, type MatmulTile } from '../kernels/matmul.ts';

interface Case { name: string; M: number; N: number; K: number }
interface Variant { name: string; tile: MatmulTile; dtypeB: FloatStorage }

const TOKENS = 512;
const CASES: Case[] = [
  ...[256, 512, 1024, 2048].map((n) => ({ name: `square ${n}`, M: n, N: n, K: n })),
  { name: 'pythia qkv', M: TOKENS, N: 2304, K: 768 },
  { name: 'pythia attn out', M: TOKENS, N: 768, K: 768 },
  { name: 'pythia mlp up', M: TOKENS, N: 3072, K: 768 },
  { name: 'pythia mlp down', M: TOKENS, N: 768, K: 3072 },
  { name: 'pythia lm head', M: TOKENS, N: 50304, K: 768 },
];

const DEFAULT_TILE_NAME = Object.entries(MATMUL_TILES).find(([, t]) => t === DEFAULT_TILE)![0];
const BF16_VARIANT = 'bf16 B';

function variantsOf(c: Case): Variant[] {
  const tiles = Object.entries(MATMUL_TILES).map(([name, tile]): Variant => ({ name, tile, dtypeB: 'f32' }));
  return c.name.startsWith('pythia') ? [...tiles, { name: BF16_VARIANT, tile: DEFAULT_TILE, dtypeB: 'bf16' }] : tiles;
}

const MAX_SECONDS_PER_CALL = 20; // slower variants are skipped (lavapipe at 2048)
const SECONDS_PER_SAMPLE = 0.3; // dispatches are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 200;

async function timeOnce(run: () => void): Promise<number> {
  const t0 = performance.now();
  run();
  await sync();
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const { adapterInfo, limits } = gpu();
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor}); default tile ${DEFAULT_TILE_NAME}`);
  const only = process.argv[2] ?? '';
  const rows: string[] = [];
  const report = (row: string) => { rows.push(row); console.log(row); };
  for (const c of CASES.filter((c) => c.name.includes(only))) {
    const a = Tensor.zeros([c.M, c.K]);
    const out = Tensor.empty([c.M, c.N]);
    const weights = new Map<FloatStorage, Tensor>();
    const cases = [];
    const costs = new Map<string, { flops: number; bytes: number; calls: number }>();
    for (const v of variantsOf(c)) {
      const largest = Math.max(4 * c.M * c.K, bytesPerElement(v.dtypeB) * c.K * c.N, 4 * c.M * c.N);
      if (largest > limits.maxStorageBufferBindingSize) {
        report(`${c.name.padEnd(18)} ${v.name.padEnd(14)} skipped: an operand of ${largest} bytes exceeds maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`);
        continue;
      }
      if (!weights.has(v.dtypeB)) weights.set(v.dtypeB, Tensor.zeros([c.K, c.N], v.dtypeB));
      const w = weights.get(v.dtypeB)!;
      const shape: MatmulShape = { batch: 1, M: c.M, N: c.N, K: c.K, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false, dtypeA: 'f32', dtypeB: v.dtypeB };
      const call = matmulCall(shape, v.tile);
      // The operand a stands in for the unread bias binding, as in ops/matmul.ts.
      const run = () => launch(call, [a, w, a], [out]);
      await timeOnce(() => launch(matmulCall({ ...shape, M: 1, N: 1, K: 1 }, v.tile), [a, w, a], [out])); // compiles the variant
      const once = await timeOnce(run);
      if (once > MAX_SECONDS_PER_CALL) {
        report(`${c.name.padEnd(18)} ${v.name.padEnd(14)} skipped: ${once.toFixed(1)} s per call`);
        continue;
      }
      const calls = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
      costs.set(v.name, { flops: call.cost.flops, bytes: call.cost.bytesRead + call.cost.bytesWritten, calls });
      cases.push(b.add(v.name, async () => {
        for (let i = 0; i < calls; i++) run();
        await sync();
      }));
    }
    if (cases.length > 0) {
      const summary = await b.suite(`${c.name} [${c.M}x${c.K}]x[${c.K}x${c.N}]`, ...cases, b.configure({ cases: { minSamples: 2, maxTime: 1.5 } }));
      const seconds = new Map(summary.results.map((r) => [r.name, r.details.mean / costs.get(r.name)!.calls]));
      const f32Seconds = seconds.get(DEFAULT_TILE_NAME);
      for (const r of summary.results) {
        const k = costs.get(r.name)!;
        const t = seconds.get(r.name)!;
        const ratio = r.name !== BF16_VARIANT ? '' : f32Seconds ? `  ${(t / f32Seconds).toFixed(2)}x the f32 time` : '  (no f32 time)';
        report(`${c.name.padEnd(18)} ${r.name.padEnd(14)} ${(t * 1e3).toFixed(2).padStart(10)} ms ${(k.flops / t / 1e9).toFixed(2).padStart(9)} GFLOP/s ${(k.bytes / t / 1e9).toFixed(2).padStart(8)} GB/s  (${r.samples} samples of ${k.calls} calls)${ratio}`);
      }
    }
    for (const t of [a, out, ...weights.values()]) t.dispose();
  }
  console.log(`\n${rows.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
