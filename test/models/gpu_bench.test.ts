// bench/gpu.ts is what a GPU session runs in its few minutes of device time: its dry run (JUICE_BENCH_SMALL=1, every
// section at small shapes) must run through here, every section reporting figures and none failing, so that a
// broken section is found on lavapipe and not on the lent device (the Mistral section once failed there unseen).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('../../bench/gpu.ts', import.meta.url));
const TSX = fileURLToPath(new URL('../../bin/tsx.mjs', import.meta.url));

test('bench/gpu.ts dry run: every section reports, none fails', () => {
  const r = spawnSync(process.execPath, ['--import', TSX, BENCH], { encoding: 'utf8', env: { ...process.env, JUICE_BENCH_SMALL: '1' }, timeout: 300_000, maxBuffer: 2 ** 26 });
  assert.is(r.status, 0, r.stderr);
  const summary = r.stdout.slice(r.stdout.indexOf('\nsummary\n'));
  assert.not.match(summary, /FAILED/, summary);
  for (const row of [/attention f32 fused forward\+backward/, /matmul f32 256\^3 tile/, /decode M1 .* small-M/, /Pythia-1b training step/,
    /Pythia-160m training step .*f32, TrainStep/, /Pythia-160m training step .*mixed precision f16, TrainStep.*x the f32 step/,
    /Mistral-7B-shaped bf16 weights, B1: decode, unpipelined .*pipelined [0-9.]+x/])
    assert.match(summary, row, `no row ${row} in\n${summary}`);
});

test.run();
