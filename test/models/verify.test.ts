// `juice verify`: the ops fixture passes; a tampered reference fails; a causal-LM reference is checked on what it
// holds; a folder of unknown kind is refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, writeSafetensors } from '../../engine/safetensors.ts';
import { verifyFolder } from '../../train/verify.ts';

const fixtures = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));

test('ops fixture: every check passes at its tolerance', async () => {
  const report = await verifyFolder(join(fixtures, 'ops'));
  assert.is(report.kind, 'ops');
  assert.ok(report.checks.length >= 15, `${report.checks.length} checks`);
  for (const c of report.checks) assert.ok(c.pass, `${c.name}: ${c.relErr} > ${c.tol}`);
  for (const c of report.checks) assert.ok(c.tol === 1e-5 || c.tol === 1e-4, c.name);
  assert.ok(report.pass);
});

for (const name of ['attention_causal', 'attention_gqa_window']) {
  test(`${name} fixture: out and lse at 1e-5, dq, dk, dv at 1e-4`, async () => {
    const report = await verifyFolder(join(fixtures, name));
    assert.is(report.kind, 'attention');
    assert.equal(report.checks.map((c) => c.name), ['out', 'lse', 'dq', 'dk', 'dv']);
    for (const c of report.checks) assert.ok(c.pass, `${c.name}: ${c.relErr} > ${c.tol}`);
  });
}

test('a tampered reference fails the check that reads it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'juice-verify-'));
  cpSync(join(fixtures, 'ops'), dir, { recursive: true });
  const tensors = readSafetensors(join(dir, 'expected.safetensors'));
  const out: Record<string, { dtype: 'F32' | 'I32'; shape: number[]; data: Float32Array | Int32Array }> = {};
  for (const [name, t] of tensors) out[name] = { dtype: t.data instanceof Int32Array ? 'I32' : 'F32', shape: t.shape, data: t.data as Float32Array | Int32Array };
  (out['rmsnorm.dweight'].data as Float32Array)[3] *= 1.01;
  writeSafetensors(join(dir, 'expected.safetensors'), out);
  const report = await verifyFolder(dir);
  assert.not.ok(report.pass);
  assert.equal(report.checks.filter((c) => !c.pass).map((c) => c.name), ['rmsnorm.dweight']);
});

/** The gpt_neox fixture's model with a reference holding only input_ids and logits, as a real pretrained model's would. */
function logitsOnlyFolder(tamper = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'juice-verify-'));
  for (const f of ['config.json', 'model.safetensors']) cpSync(join(fixtures, 'gpt_neox', f), join(dir, f));
  const tensors = readSafetensors(join(fixtures, 'gpt_neox', 'expected.safetensors'));
  const ids = tensors.get('input_ids')!, logits = tensors.get('logits')!;
  const values = Float32Array.from(logits.data as Float32Array);
  if (tamper) values[5] += 0.5;
  writeSafetensors(join(dir, 'expected.safetensors'), {
    input_ids: { dtype: 'I32', shape: ids.shape, data: ids.data as Int32Array },
    logits: { dtype: 'F32', shape: logits.shape, data: values },
  });
  return dir;
}

test('a causal-LM reference with logits only: checked on the logits, the rest listed as absent', async () => {
  const report = await verifyFolder(logitsOnlyFolder());
  assert.is(report.kind, 'causal-lm');
  assert.equal(report.checks.map((c) => c.name), ['logits']);
  assert.ok(report.checks[0].pass, `logits: ${report.checks[0].relErr}`);
  assert.equal(report.absent, [{ name: 'loss', absent: true }, { name: 'grad.*', absent: true }, { name: 'greedy_tokens', absent: true }]);
  assert.ok(report.pass);
});

test('a causal-LM reference with corrupted logits fails', async () => {
  const report = await verifyFolder(logitsOnlyFolder(true));
  assert.is(report.kind, 'causal-lm');
  assert.equal(report.checks.map((c) => [c.name, c.pass]), [['logits', false]]);
  assert.not.ok(report.pass);
});

test('a folder that is not a reference is refused with its path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'juice-verify-'));
  writeFileSync(join(dir, 'x'), '');
  try { await verifyFolder(dir); assert.unreachable(); } catch (e) { assert.match((e as Error).message, dir); }
});

test.run();
