// Matmul throughput of each tile variant: square sizes and Pythia-160m's projections at 512 tokens.
// Prints ms per call, GFLOP/s and GB/s (the kernel's analytic cost over the host-clocked time of a batch of calls).
import b from 'benny';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { launch } from '../engine/launch.ts';
import { sync } from '../engine/runtime.ts';
import { Tensor } from '../engine/tensor.ts';
import { DEFAULT_TILE, MATMUL_TILES, matmulCall, type MatmulShape } from '../kernels/matmul.ts';

interface Case { name: string; M: number; N: number; K: number }

const TOKENS = 512;
const CASES: Case[] = [
  ...[256, 512, 1024, 2048].map((n) => ({ name: `square ${n}`, M: n, N: n, K: n })),
  { name: 'pythia qkv', M: TOKENS, N: 2304, K: 768 },
  { name: 'pythia attn out', M: TOKENS, N: 768, K: 768 },
  { name: 'pythia mlp up', M: TOKENS, N: 3072, K: 768 },
  { name: 'pythia mlp down', M: TOKENS, N: 768, K: 3072 },
  { name: 'pythia lm head', M: TOKENS, N: 50304, K: 768 },
];

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
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor}); default tile ${JSON.stringify(DEFAULT_TILE)}`);
  const rows: string[] = [];
  for (const c of CASES) {
    const largest = 4 * Math.max(c.M * c.K, c.K * c.N, c.M * c.N);
    if (largest > limits.maxStorageBufferBindingSize) {
      rows.push(`${c.name.padEnd(18)} skipped: an operand of ${largest} bytes exceeds maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`);
      console.log(rows[rows.length - 1]);
      continue;
    }
    const a = Tensor.zeros([c.M, c.K]);
    const w = Tensor.zeros([c.K, c.N]);
    const out = Tensor.empty([c.M, c.N]);
    const shape: MatmulShape = { batch: 1, M: c.M, N: c.N, K: c.K, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false };
    const cases = [];
    const costs = new Map<string, { flops: number; bytes: number; calls: number }>();
    for (const [variant, tile] of Object.entries(MATMUL_TILES)) {
      const call = matmulCall(shape, tile);
      // The operand a stands in for the unread bias binding, as in ops/matmul.ts.
      const run = () => launch(call, [a, w, a], [out]);
      await timeOnce(() => launch(matmulCall({ ...shape, M: 1, N: 1, K: 1 }, tile), [a, w, a], [out])); // compiles the variant
      const once = await timeOnce(run);
      if (once > MAX_SECONDS_PER_CALL) {
        console.log(`${c.name.padEnd(18)} ${variant}: skipped, ${once.toFixed(1)} s per call`);
        continue;
      }
      const calls = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
      costs.set(variant, { flops: call.cost.flops, bytes: call.cost.bytesRead + call.cost.bytesWritten, calls });
      cases.push(b.add(variant, async () => {
        for (let i = 0; i < calls; i++) run();
        await sync();
      }));
    }
    if (cases.length > 0) {
      const summary = await b.suite(`${c.name} [${c.M}x${c.K}]x[${c.K}x${c.N}]`, ...cases, b.configure({ cases: { minSamples: 2, maxTime: 1.5 } }));
      for (const r of summary.results) {
        const k = costs.get(r.name)!;
        const seconds = r.details.mean / k.calls;
        rows.push(`${c.name.padEnd(18)} ${r.name.padEnd(14)} ${(seconds * 1e3).toFixed(2).padStart(10)} ms ${(k.flops / seconds / 1e9).toFixed(2).padStart(9)} GFLOP/s ${(k.bytes / seconds / 1e9).toFixed(2).padStart(8)} GB/s  (${r.samples} samples of ${k.calls} calls)`);
        console.log(rows[rows.length - 1]);
      }
    }
    a.dispose(); w.dispose(); out.dispose();
  }
  console.log(`\n${rows.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
