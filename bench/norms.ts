// LayerNorm and RMSNorm forward and backward on each device shape of their row reductions (kernels/spec.ts
// ROW_REDUCTION_SHAPES: the GPU's, threads sharing a row; the CPU driver's, a thread a row), at the demo's [320 x 64]
// (16 sequences of 20 tokens), hh-byte-base's [768 x 384] (4 x 192 tokens), and 512 and 2048 rows of 768, 2048 and
// 4096 columns. Prints ms per call and GB/s (the kernels' analytic bytes of one call over the host-clocked time of a
// batch of calls; the backward includes the column sums of its partial weight gradients), and each shape's time as a
// multiple of the device's own shape. Usage: npx tsx bench/norms.ts [--small] (the first two sizes only; also with
// JUICE_BENCH_SMALL=1)
import b from 'benny';
import { parseArgs } from 'node:util';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { deviceLimits, elementwiseShape, launch, rowReductionShape } from '../engine/launch.ts';
import { ledger } from '../engine/ledger.ts';
import { seconds } from './timing.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { columnSumCall } from '../kernels/column_sum.ts';
import { layerNormBackwardCall, normRowBlocks } from '../kernels/layernorm_backward.ts';
import { layerNormForwardCall } from '../kernels/layernorm_forward.ts';
import { rmsNormBackwardCall } from '../kernels/rmsnorm_backward.ts';
import { rmsNormForwardCall } from '../kernels/rmsnorm_forward.ts';
import { ROW_REDUCTION_SHAPES, type RowReductionShape } from '../kernels/spec.ts';

const { values } = parseArgs({ options: { small: { type: 'boolean', default: false } } });
const small = values.small || process.env.JUICE_BENCH_SMALL === '1';
const SIZES: [number, number][] = [[320, 64], [768, 384], ...(small ? [] : [512, 2048].flatMap((rows) => [768, 2048, 4096].map((cols): [number, number] => [rows, cols])))];
const EPS = 1e-5;
const SECONDS_PER_SAMPLE = 0.2; // calls are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 100;

/** The four benchmarked calls on one size and row-reduction shape (each records its dispatches), and a disposer of their tensors. */
function calls(rows: number, cols: number, shape: RowReductionShape): { list: { name: string; run: () => void }[]; free: () => void } {
  const limits = deviceLimits();
  const x = Tensor.fromArray(Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i)), [rows, cols]);
  const dy = Tensor.fromArray(Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i)), [rows, cols]);
  const weight = Tensor.fromArray(Float32Array.from({ length: cols }, (_, j) => 1 + 0.01 * j), [cols]);
  const bias = Tensor.zeros([cols]);
  const [y, dx] = [Tensor.empty([rows, cols]), Tensor.empty([rows, cols])];
  const [mean, rstd] = [Tensor.empty([rows]), Tensor.empty([rows])];
  const { blocks } = normRowBlocks(rows);
  const partials = [Tensor.empty([blocks, cols]), Tensor.empty([blocks, cols])];
  const sums = [Tensor.empty([cols]), Tensor.empty([cols])];
  const columnSums = (n: number) => launch(columnSumCall(limits, partials.slice(0, n).map(() => ({ blocks, cols })), elementwiseShape()), partials.slice(0, n), sums.slice(0, n));
  // The forward kernels write the statistics that the backward reads.
  const layerNormForward = () => launch(layerNormForwardCall(limits, shape, rows, cols, EPS), [x, weight, bias, null, null], [y, null, mean, rstd]);
  const rmsNormForward = () => launch(rmsNormForwardCall(limits, shape, rows, cols, EPS), [x, weight], [y, rstd]);
  layerNormForward();
  return {
    list: [
      { name: 'layerNorm forward', run: layerNormForward },
      { name: 'layerNorm backward', run: () => tidy(() => { launch(layerNormBackwardCall(limits, shape, rows, cols), [x, weight, dy, mean, rstd], [dx, ...partials]); columnSums(2); }) },
      { name: 'rmsNorm forward', run: rmsNormForward },
      { name: 'rmsNorm backward', run: () => tidy(() => { launch(rmsNormBackwardCall(limits, shape, rows, cols), [x, weight, dy, rstd], [dx, partials[0]]); columnSums(1); }) },
    ],
    free: () => { for (const t of [x, dy, weight, bias, y, dx, mean, rstd, ...partials, ...sums]) t.dispose(); },
  };
}

async function main(): Promise<void> {
  const { adapterInfo } = gpu();
  const own = Object.entries(ROW_REDUCTION_SHAPES).find(([, s]) => s === rowReductionShape())![0];
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor}); its row-reduction shape: ${own}`);
  const lines: string[] = [];
  for (const [rows, cols] of SIZES) {
    const cases = [];
    const perCall = new Map<string, { bytes: number; calls: number }>();
    const frees: (() => void)[] = [];
    for (const [shapeName, shape] of Object.entries(ROW_REDUCTION_SHAPES)) {
      const { list, free } = calls(rows, cols, shape);
      frees.push(free);
      for (const c of list) {
        const name = `${c.name} (${shapeName})`;
        await seconds(c.run); // compiles the pipelines
        ledger.reset();
        const once = await seconds(c.run);
        const { bytesRead, bytesWritten } = ledger.total();
        const n = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
        perCall.set(name, { bytes: bytesRead + bytesWritten, calls: n });
        cases.push(b.add(name, () => seconds(c.run, n)));
      }
    }
    const summary = await b.suite(`norms [${rows} x ${cols}]`, ...cases, b.configure({ cases: { minSamples: 3, maxTime: 0.5 } }));
    const perCallSeconds = new Map(summary.results.map((r) => [r.name, r.details.mean / perCall.get(r.name)!.calls]));
    for (const r of summary.results) {
      const { bytes, calls: n } = perCall.get(r.name)!;
      const s = perCallSeconds.get(r.name)!;
      const ratio = s / perCallSeconds.get(r.name.replace(/\((\w+)\)$/, `(${own})`))!;
      lines.push(`${r.name.padEnd(25)} [${rows} x ${cols}]`.padEnd(40)
        + `${(s * 1e3).toFixed(3).padStart(9)} ms ${(bytes / s / 1e9).toFixed(2).padStart(7)} GB/s ${ratio.toFixed(2).padStart(6)}x  (${r.samples} samples of ${n} calls)`);
      console.log(lines[lines.length - 1]);
    }
    for (const free of frees) free();
  }
  console.log(`\n${lines.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
