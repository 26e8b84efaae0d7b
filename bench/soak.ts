// A long run's memory: `juice sft` on a tiny byte-level GPT-NeoX for 1,000 steps with a checkpoint every 100,
// then the live GPU bytes and the process RSS of its metrics.jsonl at the start and the end. A benchmark, not a
// test: it prints figures. Usage: node --import tsx bench/soak.ts [--steps N] [--save-steps N]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readMetrics } from '../train/metrics.ts';
import { writeByteModel } from '../test/support/byte_model.ts';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '1000' }, 'save-steps': { type: 'string', default: '100' } } });
const dir = mkdtempSync(join(tmpdir(), 'juice-soak-'));
const model = writeByteModel(join(dir, 'model'));
const data = join(dir, 'data.jsonl');
writeFileSync(data, Array.from({ length: 64 }, (_, i) => JSON.stringify({ prompt: `Q${i}: what is ${i} + ${i}?`, response: ` ${2 * i}.` })).join('\n'));
const out = join(dir, 'run');
const t0 = performance.now();
const r = spawnSync(join(import.meta.dirname, '../bin/juice'), ['sft', '--model', model, '--data', data, '--out', out, '--max-steps', values.steps!,
  '--batch', '4', '--lr', '1e-3', '--max-length', '64', '--max-prompt-length', '32', '--save-steps', values['save-steps']!, '--save-total-limit', '2', '--log-steps', '100'], { stdio: ['ignore', 'inherit', 'inherit'] });
if (r.status !== 0) process.exit(r.status ?? 1);
const train = readMetrics(join(out, 'metrics.jsonl')).records.filter((m) => m.type !== 'eval') as unknown as { step: number; live_gpu_bytes: number; rss_bytes: number }[];
const at = (i: number) => train[Math.min(Math.max(i, 0), train.length - 1)];
const row = (label: string, m: { step: number; live_gpu_bytes: number; rss_bytes: number }) =>
  console.log(`${label.padEnd(8)} step ${String(m.step).padStart(5)}  live GPU ${(m.live_gpu_bytes / 1e6).toFixed(3)} MB  RSS ${(m.rss_bytes / 1e6).toFixed(1)} MB`);
console.log(`\n${train.length} steps, checkpoint every ${values['save-steps']}, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
row('start', at(1)); // step 2: after the first step's one-time allocations
row('warm', at(Math.floor(train.length / 10))); // pipelines compiled, V8's code warm: the baseline for flatness
row('middle', at(Math.floor(train.length / 2)));
row('end', at(train.length - 1));
console.log(JSON.stringify({ bench: 'soak', steps: train.length, live_gpu_bytes: [at(1).live_gpu_bytes, at(train.length - 1).live_gpu_bytes], rss_bytes: [at(1).rss_bytes, at(Math.floor(train.length / 10)).rss_bytes, at(train.length - 1).rss_bytes] }));
