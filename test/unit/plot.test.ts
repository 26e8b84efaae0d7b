import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MetricsWriter } from '../../train/metrics.ts';
import { plotSpecs, writePlots } from '../../train/plot.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-plot-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));

/** The symbols (one per plotted point) of every point layer in an SVG that vega rendered. */
function symbolCount(svg: string): number {
  let n = 0;
  for (const m of svg.matchAll(/<g class="mark-symbol role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)) n += (m[1]!.match(/<path/g) ?? []).length;
  return n;
}

function writeRun(dir: string, steps: number, evalEvery: number): void {
  const w = MetricsWriter.open(dir);
  for (let step = 1; step <= steps; step++) {
    w.log({ type: 'train', step, epoch: step / steps, loss: 3 / step, lr: 1e-4 * step, grad_norm: step === 3 ? NaN : 1 + step,
      tokens: 100, tokens_per_s: 1000, live_gpu_bytes: 1 << 20 });
    if (evalEvery > 0 && step % evalEvery === 0) w.log({ type: 'eval', step, eval_loss: 3.5 / step });
  }
  w.close();
}

test('writePlots: one SVG per quantity, with axis titles and one symbol per point', async () => {
  const run = path.join(root, 'with-eval');
  writeRun(run, 7, 3); // train steps 1..7, eval at 3 and 6; grad_norm of step 3 is NaN (written as null)
  const written = await writePlots(run);
  assert.equal(written, ['loss.svg', 'lr.svg', 'grad_norm.svg'].map((f) => path.join(run, 'plots', f)));
  const svg = Object.fromEntries(written.map((f) => [path.basename(f, '.svg'), fs.readFileSync(f, 'utf8')]));
  for (const [name, text] of Object.entries(svg)) {
    assert.ok(text.startsWith('<svg'), `${name} starts with <svg`);
    assert.ok(text.trimEnd().endsWith('</svg>'), `${name} ends with </svg>`);
    assert.ok(text.includes(">step</text>"), `${name} has the x axis title`);
  }
  assert.ok(svg.loss!.includes('>loss</text>') && svg.loss!.includes('>eval loss</text>') && svg.loss!.includes('>train loss</text>'));
  assert.ok(svg.lr!.includes('>learning rate</text>'));
  assert.ok(svg.grad_norm!.includes('>gradient norm</text>'));
  assert.is(symbolCount(svg.loss!), 7 + 2);
  assert.is(symbolCount(svg.lr!), 7);
  assert.is(symbolCount(svg.grad_norm!), 6, 'the NaN grad norm is not plotted');
});

test('without eval lines the loss plot has one series and no legend', async () => {
  const run = path.join(root, 'no-eval');
  writeRun(run, 4, 0);
  const [loss] = await writePlots(run);
  const text = fs.readFileSync(loss!, 'utf8');
  assert.is(symbolCount(text), 4);
  assert.not.ok(text.includes('eval loss'));
  assert.not.ok(text.includes('role-legend'));
});

test('plotSpecs thins long series to maxPoints, keeping the last point; no metrics, no plots', async () => {
  const records = Array.from({ length: 1001 }, (_, i) => ({ type: 'train', step: i + 1, loss: 1, lr: 1, grad_norm: 1 }));
  const [loss] = plotSpecs(records, { maxPoints: 100 });
  const steps = loss!.points.map((p) => p.step);
  assert.ok(steps.length <= 101, `${steps.length} points`);
  assert.is(steps[0], 1);
  assert.is(steps.at(-1), 1001);
  const empty = path.join(root, 'empty');
  fs.mkdirSync(empty);
  assert.equal(await writePlots(empty), []);
});

test.run();
