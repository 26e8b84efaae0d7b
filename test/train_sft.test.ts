// End to end against the PyTorch SFT fixture: TrainStep, AdamW, the warmup schedule, clipping and sftMicroLoss.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { verifyFolder } from '../train/verify.ts';

const DIR = fileURLToPath(new URL('./fixtures/train/sft', import.meta.url));

test('juice verify: the sft fixture, five steps of micro-batch 2 × accumulation 2', async () => {
  const report = await verifyFolder(DIR);
  assert.is(report.kind, 'sft');
  const names = report.checks.map((c) => c.name);
  for (const s of [1, 2, 3, 4, 5]) for (const q of ['loss', 'grad_norm', 'lr', 'clipped']) assert.ok(names.some((n) => n.startsWith(`${q}[${s}]`)), `${q}[${s}] checked`);
  assert.is(names.filter((n) => n.startsWith('grad_step1.')).length, 28);
  // 28 tensors; the 2 key biases and the one weight holding a sub-eps-gradient element are checked in two parts.
  for (const k of [1, 2, 5]) assert.is(names.filter((n) => n.startsWith(`after_step${k}.`)).length, 31, `after_step${k}`);
  assert.ok(names.some((n) => n.includes('dense_4h_to_h.weight sub-eps-gradient elements')), 'the sub-eps-gradient elements are checked against their bound');
  const failed = report.checks.filter((c) => !c.pass);
  assert.equal(failed, [], failed.map((c) => `${c.name}: ${c.relErr.toExponential(3)} > ${c.tol}`).join('; '));
  assert.ok(report.pass);
});

test.run();
