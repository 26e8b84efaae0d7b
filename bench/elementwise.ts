// Elementwise kernels on operands of one shape: the broadcasting binary kernel (index division and modulo per
// element) against the same-shape one, scalar and vec4; and scale as the reduction kernel with nothing reduced (its
// previous path) against the scale kernel. Prints ms per call, GB/s of the analytic bytes, and each variant's time
// as a multiple of the first one of its group, measured in the same run.
import b from 'benny';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { Tensor } from '../engine/tensor.ts';
import { binaryBroadcastCall, binarySameShapeCall } from '../kernels/binary.ts';
import { reduceSumCall } from '../kernels/reduce_sum.ts';
import { scaleCall } from '../kernels/scale.ts';
import type { KernelCall } from '../kernels/spec.ts';
import { seconds } from './timing.ts';

const SHAPES = [[512, 768], [2048, 768], [2048, 4096]];
const SECONDS_PER_SAMPLE = 0.2; // calls are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 200;

/** The variants of each group on n elements: [group, name, call, inputs]; the first of a group is its baseline. */
function variants(n: number, a: Tensor, c: Tensor): [string, string, KernelCall, Tensor[]][] {
  const limits = deviceLimits();
  const d = [1, 1, 1, n];
  return [
    ['add', 'broadcast (index div/mod)', binaryBroadcastCall(limits, 'add', d, [0, 0, 0, 1], [0, 0, 0, 1], n, n), [a, c]],
    ['add', 'same-shape f32', binarySameShapeCall(limits, 'add', n, false), [a, c]],
    ['add', 'same-shape vec4', binarySameShapeCall(limits, 'add', n, true), [a, c]],
    ['scale', 'reduceSum, nothing reduced', reduceSumCall(limits, d, d, 0.5, 'scale'), [a]],
    ['scale', 'scale vec4', scaleCall(limits, n, 0.5), [a]],
  ];
}

async function main(): Promise<void> {
  const { adapterInfo } = gpu();
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor})`);
  const lines: string[] = [];
  for (const [rows, cols] of SHAPES) {
    const n = rows * cols;
    const a = Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => Math.sin(i)), [n]);
    const c = Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => Math.cos(i)), [n]);
    const out = Tensor.empty([n]);
    const cases = [];
    const perCall = new Map<string, { group: string; bytes: number; calls: number }>();
    for (const [group, name, call, inputs] of variants(n, a, c)) {
      const run = () => launch(call, inputs, [out]);
      await seconds(run); // compiles the pipeline
      const once = await seconds(run);
      const calls = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
      const key = `${group}: ${name}`;
      perCall.set(key, { group, bytes: call.cost.bytesRead + call.cost.bytesWritten, calls });
      cases.push(b.add(key, () => seconds(run, calls)));
    }
    const summary = await b.suite(`elementwise [${rows} x ${cols}]`, ...cases, b.configure({ cases: { minSamples: 3, maxTime: 0.5 } }));
    const baseline = new Map<string, number>();
    for (const r of summary.results) {
      const { group, bytes, calls } = perCall.get(r.name)!;
      const s = r.details.mean / calls;
      if (!baseline.has(group)) baseline.set(group, s);
      lines.push(`${r.name.padEnd(36)} [${rows} x ${cols}]`.padEnd(52)
        + `${(s * 1e3).toFixed(3).padStart(9)} ms ${(bytes / s / 1e9).toFixed(2).padStart(7)} GB/s  ${(s / baseline.get(group)!).toFixed(3)}x  (${r.samples} samples of ${calls} calls)`);
      console.log(lines[lines.length - 1]);
    }
    for (const t of [a, c, out]) t.dispose();
  }
  console.log(`\n${lines.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
