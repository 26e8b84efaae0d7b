// The audit of a mixed-precision training step whose attention runs on the tensor cores: TrainStep with a loss
// scaler (the micro-batches' forwards inside autocast, the replayed layers of gradient checkpointing too) over an
// RFT policy loss on a tiny byte-level GPT-NeoX of head dim 16, the tensor cores emulated (withTensorCores,
// emulatedTensorCores: any device with shader-f16, lavapipe included). Workloads records the training passes with
// the plan of the kernels that ran them (attentionKernels under mixed precision), so that on every phase the
// ledger's FLOPs equal the analytic model's within 2e-4 (the loss's per-sequence scalars and the norms' column
// sums are not modelled: the ledger may only be above it). The f32 kernels' plan, which the audit took before the
// taped attention moved onto the tensor cores, misses the attention's tiles: the check shows it does here. Then a whole
// `juice irft --mixed-precision f16 --gradient-checkpointing` in this process on the same emulated cores: irft records
// the policy's training passes as mixed precision, and its audit starts from its own first op (RunAudit resets the
// ledger: the step above would otherwise be counted as the run's).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gpu } from '../../engine/gpu.ts';
import { ledger } from '../../engine/ledger.ts';
import { withTensorCores } from '../../engine/ops/attention.ts';
import { makeOptimizer } from '../../engine/optim.ts';
import { loadCausalLM } from '../../models/causal_lm.ts';
import { LEDGER_FILE, ledgerByPhase, readRunAudit, Workloads } from '../../train/audit.ts';
import type { LedgerEntry } from '../../engine/ledger.ts';
import { irft } from '../../bin/commands/irft.ts';
import { rftPolicyMicroLoss, type SampleBatch } from '../../train/objectives/rft.ts';
import { GRAD_SCALER_DEFAULTS, LossScaler } from '../../train/loss_scaler.ts';
import { trainableElements } from '../../train/audit.ts';
import { makeSchedule } from '../../train/schedule.ts';
import { TrainStep } from '../../train/step.ts';
import { tinyConfigJson, writeByteModel } from '../support/byte_model.ts';
import { emulatedTensorCores } from '../support/subgroup_matrix_emulation.ts';
import { initGpu, randInt } from '../support/util.ts';

// As test/kernels/attention_tensor_core_training.test.ts: an H100's M16 N16 K16 matrices, subgroups of 32 lanes.
const EMULATED = emulatedTensorCores({ M: 16, N: 16, K: 16 }, 32);
const TOL = 2e-4;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-audit-mixed-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** N rows of T tokens, the last `response` of each the response (ragged against every kernel's tiles). */
function sampleBatch(N: number, T: number, response: number, seed: number): SampleBatch {
  const mask = new Float32Array(N * T);
  for (let r = 0; r < N; r++) mask.fill(1, r * T + T - response, (r + 1) * T);
  return { ids: randInt(N * T, 256, seed), mask, T };
}

test('mixed precision on the (emulated) tensor cores: every phase of a training step at ledger / analytic 1 within 2e-4', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the mixed-precision attention is not tested'); return; }
  const policy = loadCausalLM(writeByteModel(path.join(tmp, 'model'), tinyConfigJson({ num_attention_heads: 2 })));
  policy.gradientCheckpointing = true;
  const batches = [sampleBatch(2, 37, 12, 5), sampleBatch(3, 21, 9, 6)];
  const total = batches.reduce((n, b) => n + b.ids.length / b.T, 0);
  await withTensorCores(EMULATED, async () => {
    // As juice rft records its policy's update: a micro-batch per batch, then the optimizer; once as the run now
    // records it, once on the f32 kernels' plan alone (the audit before the tensor cores).
    const record = (w: Workloads) => {
      for (const b of batches) w.trained('policy', b.ids.length / b.T, b.T, 'all', false);
      w.optimizer(trainableElements(policy.params));
      return w;
    };
    const workloads = record(new Workloads(policy.config, { mixedPrecision: { policy: true }, gradientCheckpointing: { policy: true } }));
    const f32Plan = record(new Workloads(policy.config, { gradientCheckpointing: { policy: true } }));
    const optimizer = makeOptimizer('adamw', policy.params.entries(), { lr: 1e-3 });
    const step = new TrainStep({
      params: policy.params, optimizer, schedule: makeSchedule({ kind: 'constant', lr: 1e-3, totalSteps: 1 }), clipNorm: 1, lossScaler: new LossScaler({ ...GRAD_SCALER_DEFAULTS, initScale: 1024 }),
    });
    ledger.reset();
    await step.run(batches.map((b) => () => rftPolicyMicroLoss(policy, b, Array.from({ length: b.ids.length / b.T }, (_, i) => i - 1), total)));
    step.dispose();
    optimizer.dispose();
    // The attention ran on the tensor cores in every training phase: the forward, the backward and the replays.
    const tensorCoreOps = ledger.all().filter((e) => /TensorCore/.test(e.op)).map((e) => `${e.phase} ${e.op}`).sort();
    assert.equal(tensorCoreOps, [
      'policy-backward attentionBackwardDkDvTensorCoreEmulated', 'policy-backward attentionBackwardDqTensorCoreEmulated',
      'policy-backward-recompute attentionForwardTensorCoreEmulated', 'policy-forward attentionForwardTensorCoreEmulated',
    ]);
    const analytic = workloads.analytic(), before = f32Plan.analytic();
    const rows = ledgerByPhase(ledger.all()).filter((r) => r.flops > 0);
    assert.equal(rows.map((r) => r.key).sort(), ['optimizer', 'policy-backward', 'policy-backward-recompute', 'policy-forward']);
    for (const r of rows) {
      const phase = r.key as keyof typeof analytic, ratio = r.flops / analytic[phase], f32Ratio = r.flops / before[phase];
      console.log(`  ${phase.padEnd(25)} ledger / analytic ${ratio.toFixed(6)}   on the f32 kernels' plan ${f32Ratio.toFixed(6)}`);
      assert.ok(Math.abs(ratio - 1) <= TOL && r.flops >= analytic[phase] * (1 - 1e-9), `${phase}: ledger / analytic = ${ratio}`);
      if (phase !== 'optimizer') assert.ok(Math.abs(f32Ratio - 1) > TOL, `${phase}: the f32 plan agrees too (${f32Ratio}): the tensor cores' tiles are not tested`);
    }
  });
  policy.params.dispose();
});

test('juice irft --mixed-precision f16 on the (emulated) tensor cores, in the process of the test before: the run records the plans it ran and counts its own work, every phase at 1 within 2e-4', async () => {
  await initGpu();
  if (!gpu().features.has('shader-f16')) { console.log('no shader-f16 on this device: the mixed-precision attention is not tested'); return; }
  const model = writeByteModel(path.join(tmp, 'irft-model'), tinyConfigJson({ num_attention_heads: 2 }));
  const data = path.join(tmp, 'data.jsonl');
  fs.writeFileSync(data, Array.from({ length: 4 }, (_, i) => JSON.stringify({ prompt: `what is ${i} plus 2?`, response: ` ${i + 2}.` })).join('\n') + '\n');
  const out = path.join(tmp, 'irft');
  const code = await withTensorCores(EMULATED, () => irft.main(['--model', model, '--data', data, '--out', out, '--batch', '2', '--max-new-tokens', '4', '--max-length', '32',
    '--max-prompt-length', '16', '--stages', '1', '--epochs-per-stage', '1', '--mixed-precision', 'f16', '--gradient-checkpointing']));
  assert.is(code, 0);
  const entries = (JSON.parse(fs.readFileSync(path.join(out, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] }).entries;
  const onTensorCores = [...new Set(entries.filter((e) => /TensorCore/.test(e.op)).map((e) => e.phase))].sort();
  assert.equal(onTensorCores, ['policy-backward', 'policy-backward-recompute', 'policy-forward'], 'the policy\'s training passes ran on the tensor cores');
  const rows = readRunAudit(out).rows.filter((r) => r.ledgerFlops > 0);
  for (const r of rows) {
    const ratio = r.ledgerFlops / r.analyticFlops;
    console.log(`  irft ${r.phase.padEnd(25)} ledger / analytic ${ratio.toFixed(6)}`);
    assert.ok(Math.abs(ratio - 1) <= TOL && r.ledgerFlops >= r.analyticFlops * (1 - 1e-9), `${r.phase}: ledger / analytic = ${ratio}`);
  }
  assert.ok(rows.some((r) => r.phase === 'generation') && rows.some((r) => r.phase === 'reference'), 'generation and the reference pass were audited too');
});

test.run();
