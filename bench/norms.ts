// LayerNorm and RMSNorm forward and backward at 512 and 2048 rows of 768, 2048 and 4096 columns.
// Prints ms per call and GB/s: the ledger's analytic bytes of one call over the host-clocked time of a
// batch of calls (the backward includes its column sums).
import b from 'benny';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { ledger } from '../engine/ledger.ts';
import { layerNormBackward, rmsNormBackward } from '../engine/ops/norms.ts';
import { seconds } from './timing.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { layerNormForwardCall } from '../kernels/layernorm_forward.ts';
import { rmsNormForwardCall } from '../kernels/rmsnorm_forward.ts';

const ROWS = [512, 2048];
const COLS = [768, 2048, 4096];
const EPS = 1e-5;
const SECONDS_PER_SAMPLE = 0.2; // calls are queued in batches of about this long, far above timer resolution
const MAX_CALLS_PER_SAMPLE = 100;

/** The four benchmarked calls on one shape (each records its dispatches and frees what it made), and a disposer of their inputs. */
function calls(rows: number, cols: number): { list: { name: string; run: () => void }[]; free: () => void } {
  const x = Tensor.fromArray(Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i)), [rows, cols]);
  const dy = Tensor.fromArray(Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i)), [rows, cols]);
  const weight = Tensor.fromArray(Float32Array.from({ length: cols }, (_, j) => 1 + 0.01 * j), [cols]);
  const bias = Tensor.zeros([cols]);
  const y = Tensor.empty([rows, cols]);
  const mean = Tensor.empty([rows]);
  const rstd = Tensor.empty([rows]);
  // The forward kernels write the statistics that the backward reads.
  const layerNormForward = () => launch(layerNormForwardCall(deviceLimits(), rows, cols, EPS), [x, weight, bias, null, null], [y, null, mean, rstd]);
  const rmsNormForward = () => launch(rmsNormForwardCall(deviceLimits(), rows, cols, EPS), [x, weight], [y, rstd]);
  layerNormForward();
  return {
    list: [
      { name: 'layerNorm forward', run: layerNormForward },
      { name: 'layerNorm backward', run: () => tidy(() => { layerNormBackward(x, weight, dy, mean, rstd); }) },
      { name: 'rmsNorm forward', run: rmsNormForward },
      { name: 'rmsNorm backward', run: () => tidy(() => { rmsNormBackward(x, weight, dy, rstd); }) },
    ],
    free: () => { for (const t of [x, dy, weight, bias, y, mean, rstd]) t.dispose(); },
  };
}

async function main(): Promise<void> {
  const { adapterInfo } = gpu();
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor})`);
  const lines: string[] = [];
  for (const rows of ROWS) {
    for (const cols of COLS) {
      const { list, free } = calls(rows, cols);
      const cases = [];
      const perCall = new Map<string, { bytes: number; calls: number }>();
      for (const c of list) {
        await seconds(c.run); // compiles the pipelines
        ledger.reset();
        const once = await seconds(c.run);
        const { bytesRead, bytesWritten } = ledger.total();
        const n = Math.max(1, Math.min(MAX_CALLS_PER_SAMPLE, Math.round(SECONDS_PER_SAMPLE / once)));
        perCall.set(c.name, { bytes: bytesRead + bytesWritten, calls: n });
        cases.push(b.add(c.name, () => seconds(c.run, n)));
      }
      const summary = await b.suite(`norms [${rows} x ${cols}]`, ...cases, b.configure({ cases: { minSamples: 3, maxTime: 0.5 } }));
      for (const r of summary.results) {
        const { bytes, calls: n } = perCall.get(r.name)!;
        const s = r.details.mean / n;
        lines.push(`${r.name.padEnd(19)} [${rows} x ${cols}]`.padEnd(34)
          + `${(s * 1e3).toFixed(3).padStart(9)} ms ${(bytes / s / 1e9).toFixed(2).padStart(7)} GB/s  (${r.samples} samples of ${n} calls)`);
        console.log(lines[lines.length - 1]);
      }
      free();
    }
  }
  console.log(`\n${lines.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
