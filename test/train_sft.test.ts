// End to end against the PyTorch SFT fixture: TrainStep, AdamW, the warmup schedule, clipping and sftMicroLoss.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { verifyFolder } from '../train/verify.ts';

const local = fileURLToPath(new URL('./fixtures/train/sft', import.meta.url));
const DIR = existsSync(local) ? local : '/work/shared/fixtures/train/sft';

test('juice verify: the sft fixture, five steps of micro-batch 2 × accumulation 2', async () => {
  const report = await verifyFolder(DIR);
  assert.is(report.kind, 'sft');
  const names = report.checks.map((c) => c.name);
  for (const s of [1, 2, 3, 4, 5]) for (const q of ['loss', 'grad_norm', 'lr', 'clipped']) assert.ok(names.includes(`${q}[${s}]`), `${q}[${s}] checked`);
  assert.is(names.filter((n) => n.startsWith('grad_step1.')).length, 28);
  for (const k of [1, 2, 5]) assert.is(names.filter((n) => n.startsWith(`after_step${k}.`)).length, 30, `after_step${k}: 28 tensors, the 2 key biases in two parts`);
  const failed = report.checks.filter((c) => !c.pass);
  assert.equal(failed, [], failed.map((c) => `${c.name}: ${c.relErr.toExponential(3)} > ${c.tol}`).join('; '));
  assert.ok(report.pass);
});

test.run();
