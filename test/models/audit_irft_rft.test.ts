// The audit of tiny real runs (child processes on a byte-level GPT-NeoX): SFT with LoRA, accumulation and held-out pairs; IRFT of 2 stages, full and LoRA
// (generation, reference, policy forward/backward, optimizer, merge; the LoRA run's held-out pairs, evaluation), and RFT
// (with held-out records without pairs), full and LoRA (reward forward and
// backward too, and the policy and reward model scoring the samples; the LoRA run with gradient checkpointing, whose
// replayed layers are phases of their own), and IRFT with mixed precision (its f16 casts: bytes, no FLOPs). On
// EVERY phase the ledger's FLOPs agree with the analytic model (train/audit_model.ts, attention as the tiled kernels execute it) on the recorded workloads
// within 2%. What the analytic model leaves out is the engine's: the norms' second-stage column sums and the loss's
// per-sequence scalars, so the ledger may only be above it (by about 0.02% in the backward phases since the QKV
// split writes its slices' gradients in place; forward phases and generation agree to 1e-5). The useful count
// (attention over visible keys, for MFU) is below.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ledgerByPhase, readRunAudit, Workloads, LEDGER_FILE } from '../../train/audit.ts';
import { PHASES } from '../../train/audit_model.ts';
import type { LedgerEntry } from '../../engine/ledger.ts';
import { writeAdditionData, writeByteModel } from '../support/byte_model.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-audit-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const model = writeByteModel(path.join(tmp, 'model'));
const data = writeAdditionData(path.join(tmp, 'data.jsonl'), 6);
// Held-out pairs (HH's format) and plain records: the evaluation's two paths (pair metrics; the eval loss alone).
const evalPairs = path.join(tmp, 'eval_pairs.jsonl'), evalPlain = path.join(tmp, 'eval_plain.jsonl');
fs.writeFileSync(evalPairs, Array.from({ length: 4 }, (_, i) => JSON.stringify({ chosen: `\n\nHuman: what is ${i} plus 2?\n\nAssistant: It is ${i + 2}.`, rejected: `\n\nHuman: what is ${i} plus 2?\n\nAssistant: No.` })).join('\n') + '\n');
fs.writeFileSync(evalPlain, Array.from({ length: 3 }, (_, i) => JSON.stringify({ prompt: `\n\nHuman: what is ${i} plus 1?\n\nAssistant:`, response: ` It is ${i + 1}.` })).join('\n') + '\n');
const common = ['--model', model, '--data', data, '--batch', '3', '--max-new-tokens', '8', '--max-length', '64', '--max-prompt-length', '40', '--save-steps', '100'];
const LORA = ['--lora-r', '4'];

function juice(command: string, args: string[]): string {
  const r = spawnSync(process.execPath, ['--import', path.join(ROOT, 'bin/tsx.mjs'), path.join(ROOT, 'bin/juice.ts'), command, ...args], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stdout + r.stderr);
  return r.stdout;
}

/** Every phase with FLOPs is an audit phase, each of `phases` is there, and each agrees with the analytic model within 2%. */
function check(dir: string, phases: string[]): void {
  const { rows, workloads } = readRunAudit(dir);
  const entries = (JSON.parse(fs.readFileSync(path.join(dir, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] }).entries;
  const w = new Workloads(workloads.config);
  w.data = workloads;
  const parts = w.breakdown();
  for (const r of ledgerByPhase(entries)) if (r.flops > 0) assert.ok((PHASES as readonly string[]).includes(r.key), `FLOPs in phase '${r.key}'`);
  const seen = rows.filter((r) => r.ledgerFlops > 0).map((r) => r.phase);
  assert.equal(seen.sort(), [...phases].sort(), `${dir}: phases`);
  for (const r of rows.filter((x) => x.ledgerFlops > 0)) {
    const ratio = r.ledgerFlops / r.analyticFlops;
    console.log(`  ${path.basename(dir).padEnd(9)} ${r.phase.padEnd(25)} ledger / analytic ${ratio.toFixed(4)}   useful / analytic ${(r.usefulFlops / r.analyticFlops).toFixed(4)}`);
    assert.ok(Math.abs(ratio - 1) <= 0.02, `${dir} ${r.phase}: ledger / analytic = ${ratio}`);
    assert.ok(r.ledgerFlops >= r.analyticFlops * (1 - 1e-9), `${dir} ${r.phase}: the ledger below the analytic model (${ratio})`);
    const b = parts[r.phase as keyof typeof parts];
    assert.ok(b.attentionExecuted >= b.attention && r.usefulFlops <= r.analyticFlops, `${r.phase}: useful above executed`);
  }
}

test('IRFT (full, 2 stages): every phase within 2%', () => {
  const out = path.join(tmp, 'irft');
  juice('irft', [...common, '--out', out, '--stages', '2']);
  check(out, ['generation', 'reference', 'policy-forward', 'policy-backward', 'optimizer']);
  const json = JSON.parse(juice('audit', [out, '--json'])) as Record<string, { ledger_flops: number; analytic_flops: number; ratio: number | null; useful_flops: number; bytes: number; gpu_ms: number | null }>;
  assert.ok(json.optimizer.ratio !== null && json.generation.gpu_ms === null && json['policy-forward'].bytes > 0);
  assert.ok(json['policy-forward'].useful_flops < json['policy-forward'].analytic_flops);
});

test('SFT (LoRA, 2 micro-batches a step, held-out pairs, every kernel timed): the audit IRFT and RFT write, every phase within 2%, the peak probe not among them', () => {
  const out = path.join(tmp, 'sft');
  const sftArgs = ['--model', model, '--data', data, '--batch', '2', '--grad-accum', '2', '--max-length', '64', '--max-prompt-length', '40', '--max-steps', '3', '--save-steps', '100'];
  const stdout = juice('sft', [...sftArgs, ...LORA, '--out', out, '--eval-data', evalPairs, '--eval-steps', '2', '--time-kernels']);
  check(out, ['policy-forward', 'policy-backward', 'optimizer', 'evaluation']);
  assert.ok(/audit \(/.test(stdout) && /MFU@/.test(stdout), stdout);
  const { rows, workloads } = readRunAudit(out);
  assert.ok(rows.every((r) => r.phase === 'other' || r.gpuMs !== null), 'every phase timed');
  assert.ok(workloads.peakTflops !== null && workloads.peakTflops > 0 && workloads.accumulated.policy > 0);
});

test('the peak MFU is measured against: --peak-tflops in every trainer (SFT too), else a probe only when kernels are timed', () => {
  const sftArgs = ['--model', model, '--data', data, '--batch', '2', '--max-length', '64', '--max-prompt-length', '40', '--max-steps', '1', '--save-steps', '100'];
  const sft = path.join(tmp, 'sft-peak');
  juice('sft', [...sftArgs, '--out', sft, '--time-kernels', '--peak-tflops', '2.5']);
  const timed = readRunAudit(sft).workloads;
  assert.equal([timed.peakTflops, timed.peakSource], [2.5, '--peak-tflops']);
  // Without GPU times there is no MFU: an untimed run without --peak-tflops probes nothing and records no peak.
  const irft = path.join(tmp, 'irft-untimed');
  juice('irft', [...common, '--out', irft, '--stages', '1', '--limit', '2']);
  const untimed = readRunAudit(irft).workloads;
  assert.equal([untimed.peakTflops, untimed.peakSource], [null, null]);
});

test('IRFT with LoRA: the merge too, and the backward pruned below the first adapter', () => {
  const out = path.join(tmp, 'irft-lora');
  juice('irft', [...common, ...LORA, '--out', out, '--stages', '2', '--eval-data', evalPairs, '--eval-steps', '1']);
  check(out, ['generation', 'reference', 'policy-forward', 'policy-backward', 'optimizer', 'merge', 'evaluation']);
});

test('RFT: every phase within 2%, the reward model\'s and the scoring of samples too', () => {
  const out = path.join(tmp, 'rft');
  juice('rft', [...common, '--out', out, '--prompts-per-iteration', '3', '--epochs', '1', '--eval-data', evalPlain]);
  check(out, ['generation', 'reference', 'policy-forward', 'policy-backward', 'reward-forward', 'reward-backward', 'optimizer', 'evaluation']);
  assert.ok(fs.existsSync(path.join(out, 'reward_model', 'model.safetensors')));
  const table = juice('audit', [out]);
  assert.ok(/useful GFLOP/.test(table) && /reward-backward/.test(table), table);
});

test('RFT with LoRA policy and --gradient-checkpointing: the layers replayed in both backwards are counted too', () => {
  const out = path.join(tmp, 'rft-lora');
  juice('rft', [...common, ...LORA, '--gradient-checkpointing', '--out', out, '--prompts-per-iteration', '3', '--epochs', '1']);
  check(out, ['generation', 'reference', 'policy-forward', 'policy-backward', 'policy-backward-recompute', 'reward-forward', 'reward-backward', 'reward-backward-recompute', 'optimizer']);
});

test('IRFT with --mixed-precision f16 and --gradient-checkpointing: the casts add bytes and no FLOPs, every phase within 2%', () => {
  const out = path.join(tmp, 'irft-mixed');
  juice('irft', [...common, '--mixed-precision', 'f16', '--gradient-checkpointing', '--out', out, '--stages', '2']);
  check(out, ['generation', 'reference', 'policy-forward', 'policy-backward', 'policy-backward-recompute', 'optimizer']);
  const entries = (JSON.parse(fs.readFileSync(path.join(out, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] }).entries;
  const casts = entries.filter((e) => e.op === 'castF16'), weightCasts = entries.filter((e) => e.op === 'castF16Weight');
  // The forward's copies, the backward's f16 output gradients, the replayed layers' copies; none outside training.
  assert.equal(casts.map((e) => e.phase).sort(), ['policy-backward', 'policy-backward-recompute', 'policy-forward']);
  // The weights' copies are made once a step, in its first forward: the replayed layers reuse them.
  assert.equal(weightCasts.map((e) => e.phase), ['policy-forward']);
  assert.ok([...casts, ...weightCasts].every((e) => e.flops === 0 && e.bytesRead > 0 && e.bytesWritten > 0), JSON.stringify(casts));
});

test.run();
