// Fused vs composed attention, forward and forward+backward, causal and windowed, at B1 H4 and head dim 64 (or
// the one given: `npx tsx bench/attention.ts 256`).
// Prints ms per call, the ratio fused/composed measured in the same run, useful GFLOP/s (visible entries only,
// attentionUsefulFlops: the same count for both) and, for the fused kernels, the GFLOP/s of what their
// computed tiles charge to the ledger. Times are host-clocked over a batch of calls.
import b from 'benny';
import { backward, zeroGrad } from '../engine/autodiff.ts';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { attention, attentionUsefulFlops, type AttentionOptions } from '../engine/ops/attention.ts';
import { attentionComposed } from '../engine/ops/attention_composed.ts';
import { seconds } from './timing.ts';
import { Tensor, tidy } from '../engine/tensor.ts';

const [B, H] = [1, 4];
const D = Number(process.argv[2] ?? 64);
if (!Number.isInteger(D) || D < 1) throw new Error(`head dim '${process.argv[2]}' is not a positive integer`);
const LENGTHS = [256, 512];
const MASKS: { name: string; opts: AttentionOptions }[] = [
  { name: 'causal', opts: { causal: true } },
  { name: 'window 64', opts: { window: 64 } },
];
const IMPLEMENTATIONS = { fused: attention, composed: attentionComposed };
const SECONDS_PER_SAMPLE = 0.3; // calls are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 50;

function random(shape: number[], requiresGrad: boolean): Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  const t = Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + shape.length)), shape);
  t.requiresGrad = requiresGrad;
  return t;
}

async function main(): Promise<void> {
  const { adapterInfo } = gpu();
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor}); B${B} H${H} D${D}`);
  const lines: string[] = [];
  for (const T of LENGTHS) {
    for (const mask of MASKS) {
      for (const withBackward of [false, true]) {
        const [q, k, v] = [random([B, H, T, D], withBackward), random([B, H, T, D], withBackward), random([B, H, T, D], withBackward)];
        const dout = random([B, H, T, D], false);
        const useful = attentionUsefulFlops({ B, H, KVH: H, T, S: T, D }, mask.opts);
        const usefulFlops = useful.forward + (withBackward ? useful.backward : 0);
        const mode = withBackward ? 'fwd+bwd' : 'forward';
        const cases = [];
        const perCall = new Map<string, { calls: number; charged: number }>();
        for (const [name, f] of Object.entries(IMPLEMENTATIONS)) {
          const run = () => tidy(() => {
            const out = f(q, k, v, mask.opts);
            if (withBackward) { backward(out, dout); zeroGrad([q, k, v]); }
          });
          await seconds(run); // compiles the pipelines
          ledger.reset();
          const once = await seconds(run);
          const calls = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
          perCall.set(name, { calls, charged: ledger.total().flops });
          cases.push(b.add(name, async () => { await seconds(run, calls); }));
        }
        const summary = await b.suite(`T${T} ${mask.name} ${mode}`, ...cases, b.configure({ cases: { minSamples: 2, maxTime: 1.5 } }));
        const ms = new Map(summary.results.map((r) => [r.name, (1e3 * r.details.mean) / perCall.get(r.name)!.calls]));
        for (const r of summary.results) {
          const t = ms.get(r.name)!;
          const charged = r.name === 'fused' ? `${(perCall.get(r.name)!.charged / t / 1e6).toFixed(2).padStart(7)} charged GFLOP/s` : '';
          lines.push(`T${String(T).padEnd(5)} ${mask.name.padEnd(10)} ${mode.padEnd(8)} ${r.name.padEnd(9)} ${t.toFixed(1).padStart(9)} ms  `
            + `fused/composed ${(ms.get('fused')! / ms.get('composed')!).toFixed(3)}  ${(usefulFlops / t / 1e6).toFixed(2).padStart(7)} useful GFLOP/s ${charged}`);
          console.log(lines[lines.length - 1]);
        }
        for (const t of [q, k, v, dout]) t.dispose();
      }
    }
  }
  console.log(`\n${lines.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
