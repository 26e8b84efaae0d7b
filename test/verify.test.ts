// `juice verify`: the ops fixture passes; a tampered reference fails; a folder of unknown kind is refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, writeSafetensors } from '../engine/safetensors.ts';
import { verifyFolder } from '../train/verify.ts';

const fixtures = fileURLToPath(new URL('./fixtures/hf/', import.meta.url));

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

test('a folder that is not a reference is refused with its path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'juice-verify-'));
  writeFileSync(join(dir, 'x'), '');
  try { await verifyFolder(dir); assert.unreachable(); } catch (e) { assert.match((e as Error).message, dir); }
});

test.run();
