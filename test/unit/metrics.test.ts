import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { METRICS_FILE, MetricsError, MetricsWriter, readMetrics, truncateMetrics, type TrainMetrics } from '../../train/metrics.ts';
import { Progress, formatDuration } from '../../train/progress.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-metrics-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshRun = () => path.join(root, `run-${counter++}`);

const trainLine = (step: number): TrainMetrics => ({
  type: 'train', step, epoch: step / 10, loss: 2 / step, lr: 1e-4, grad_norm: 1.5, tokens: 512, tokens_per_s: 1e4, live_gpu_bytes: 1 << 30,
});

test('writer appends one JSON line per record; reader returns them in order', () => {
  const run = freshRun();
  const w = MetricsWriter.open(run);
  w.log(trainLine(1));
  w.log({ ...trainLine(2), loss: NaN });
  w.log({ type: 'eval', step: 2, eval_loss: 1.25 });
  w.close();
  const file = path.join(run, METRICS_FILE);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  assert.is(lines.length, 4);
  assert.is(lines[3], '');
  const { records, truncatedTail } = readMetrics(file);
  assert.not.ok(truncatedTail);
  assert.equal(records.map((r) => [r.type, r.step]), [['train', 1], ['train', 2], ['eval', 2]]);
  assert.is(records[0]!.loss, 2);
  assert.is(records[1]!.loss, null, 'NaN is written as null');
  assert.type(records[0]!.time, 'number');
  assert.throws(() => w.log(trainLine(3)), /closed/);
});

test('a truncated last line is tolerated by the reader and removed by the next writer', () => {
  const run = freshRun();
  const file = path.join(run, METRICS_FILE);
  const w = MetricsWriter.open(run);
  w.log(trainLine(1));
  w.log(trainLine(2));
  w.close();
  fs.appendFileSync(file, '{"type":"train","step":3,"lo'); // killed mid-write
  const r = readMetrics(file);
  assert.ok(r.truncatedTail);
  assert.equal(r.records.map((x) => x.step), [1, 2]);
  const w2 = MetricsWriter.open(run);
  w2.log(trainLine(3));
  w2.close();
  assert.equal(readMetrics(file).records.map((x) => x.step), [1, 2, 3]);
  // Killed between '}' and '\n': the line is complete and kept; the writer adds the newline.
  fs.appendFileSync(file, JSON.stringify(trainLine(4)));
  assert.equal(readMetrics(file).records.map((x) => x.step), [1, 2, 3, 4]);
  const w3 = MetricsWriter.open(run);
  w3.log(trainLine(5));
  w3.close();
  assert.equal(readMetrics(file).records.map((x) => x.step), [1, 2, 3, 4, 5]);
});

test('other bad lines are errors naming the file and line number', () => {
  const file = path.join(freshRun(), METRICS_FILE);
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, `${JSON.stringify(trainLine(1))}\n{"step": 2, oops}\n${JSON.stringify(trainLine(3))}\n`);
  assert.throws(() => readMetrics(file), (e: unknown) => e instanceof MetricsError && e.message.startsWith(`${file}:2:`) && e.line === 2);
  fs.writeFileSync(file, `${JSON.stringify(trainLine(1))}\n\n{"loss": 1}\n`);
  assert.throws(() => readMetrics(file), (e: unknown) => e instanceof MetricsError && e.message.includes(`${file}:3:`) && e.message.includes('"step"'));
  assert.throws(() => MetricsWriter.open(path.dirname(file)), /:3:/, 'the writer refuses to append to a corrupt file');
  assert.equal(readMetrics(path.join(root, 'missing.jsonl')).records, []);
});

test('resume drops the lines after the resumed step, atomically', () => {
  const run = freshRun();
  const file = path.join(run, METRICS_FILE);
  const w = MetricsWriter.open(run);
  for (let s = 1; s <= 6; s++) {
    w.log(trainLine(s));
    if (s % 2 === 0) w.log({ type: 'eval', step: s, eval_loss: 1 });
  }
  w.close();
  fs.appendFileSync(file, '{"ty');
  const resumed = MetricsWriter.open(run, { resumeStep: 4 });
  assert.equal(readMetrics(file).records.map((r) => `${r.type}${r.step}`), ['train1', 'train2', 'eval2', 'train3', 'train4', 'eval4']);
  resumed.log(trainLine(5));
  resumed.close();
  assert.equal(readMetrics(file).records.map((r) => r.step), [1, 2, 2, 3, 4, 4, 5]);
  assert.equal(fs.readdirSync(run), [METRICS_FILE], 'no temp file left');
  assert.is(truncateMetrics(file, 10), 0);
  assert.is(truncateMetrics(file, 0), 7);
  assert.equal(readMetrics(file).records, []);
});

test('progress without a TTY prints a plain line every N steps and at the end', () => {
  let out = '';
  const stream = new Writable({ write(chunk, _enc, done) { out += chunk; done(); } });
  let clock = 0;
  const p = new Progress({ total: 25, every: 10, stream, now: () => clock });
  for (let step = 1; step <= 25; step++) {
    clock += 2000;
    p.update({ step, epoch: step / 25, loss: 1 / step, lr: 2e-5, tokensPerS: 12345.6 });
  }
  p.log('eval loss 0.5');
  p.stop();
  const lines = out.trimEnd().split('\n');
  assert.equal(lines.map((l) => l.split(' |')[0]), ['step 1/25', 'step 10/25', 'step 20/25', 'step 25/25', 'eval loss 0.5']);
  assert.is(lines[1], 'step 10/25 | epoch 0.40 | loss 0.1000 | lr 2.00e-5 | 12,346 tok/s | eta 30s');
  assert.ok(lines[0]!.endsWith('eta ?'));
  assert.not.ok(out.includes('\x1b'), 'no escape codes');
  assert.is(formatDuration(3725), '1h02m');
  assert.is(formatDuration(65), '1m05s');
});

test('progress with a TTY draws a cli-progress bar', () => {
  let out = '';
  const stream = Object.assign(new Writable({ write(chunk, _enc, done) { out += chunk; done(); } }), {
    isTTY: true, columns: 200, cursorTo: () => true, clearLine: () => true, moveCursor: () => true,
  });
  const p = new Progress({ total: 4, stream });
  for (let step = 1; step <= 4; step++) p.update({ step, loss: 1, lr: 1e-4, tokensPerS: 10 });
  p.stop();
  assert.ok(out.includes('step 4/4'), JSON.stringify(out.slice(-300)));
  assert.ok(out.includes('loss 1.0000'));
});

test.run();
