// The audit of tiny demo runs (train/demo.ts): on EVERY phase the ledger's FLOPs agree with the analytic model
// (train/audit_model.ts, attention as the tiled kernels execute it) fed with the workloads the run recorded, within
// 2%, the evaluation's (held-out log-probs and greedy answers) among them. The ledger
// may only be above the model (the engine's q/k/v slice-gradient sums, the norms' column sums and the loss scalars
// are left out of it), and the useful count (attention over the visible keys, for MFU) below it. By kind, the
// products and the attention kernels (the backward's delta and the decode's merge among them) agree exactly.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEMO_DEFAULTS, runDemo, type Method } from '../../train/demo.ts';
import { initGpu } from '../support/util.ts';

async function tinyRun(method: Method) {
  await initGpu();
  return runDemo({ ...DEMO_DEFAULTS, methods: [method], baseSteps: 2, steps: 3, batch: 8, evalSize: 8, evalEvery: 3, rewardSteps: 2, stages: 2 });
}

function checkAudit(r: Awaited<ReturnType<typeof tinyRun>>, phases: string[]) {
  const seen = r.audit.filter((a) => a.ledgerFlops > 0).map((a) => a.phase);
  assert.equal([...seen].sort(), [...phases].sort(), 'phases with FLOPs');
  for (const a of r.audit.filter((x) => x.ledgerFlops > 0)) {
    const ratio = a.ledgerFlops / a.analyticFlops;
    console.log(`  ${a.phase.padEnd(16)} ledger / analytic ${ratio.toFixed(4)}   useful / analytic ${(a.usefulFlops / a.analyticFlops).toFixed(4)}`);
    assert.ok(Math.abs(ratio - 1) <= 0.02, `phase ${a.phase}: ledger / analytic = ${ratio}`);
    assert.ok(a.ledgerFlops >= a.analyticFlops * (1 - 1e-9), `phase ${a.phase}: the ledger below the analytic model (${ratio})`);
    assert.ok(a.usefulFlops <= a.analyticFlops, `phase ${a.phase}: useful above executed`);
  }
  // By kind, exactly: the products and the attention kernels, each against its analytic part; the optimizer's
  // within 1e-4, since the final sum of the grad norm's partials (one per workgroup of the device) is left out.
  for (const k of r.kinds.filter((x) => x.analyticProducts > 0)) {
    assert.ok(Math.abs(k.products / k.analyticProducts - 1) <= (k.phase === 'optimizer' ? 1e-4 : 1e-9), `phase ${k.phase}: products ledger / analytic = ${k.products / k.analyticProducts}`);
    if (k.analyticAttention > 0) assert.ok(Math.abs(k.attention / k.analyticAttention - 1) <= 1e-9, `phase ${k.phase}: attention ledger / analytic = ${k.attention / k.analyticAttention}`);
  }
}

test('audit of a tiny IRFT run: generation, reference, policy forward and backward, optimizer, evaluation', async () => {
  checkAudit(await tinyRun('irft'), ['generation', 'reference', 'policy-forward', 'policy-backward', 'optimizer', 'evaluation']);
});

test('audit of a tiny RFT run: the reward model\'s phases, and the scoring of samples in policy-forward and reward-forward', async () => {
  checkAudit(await tinyRun('rft'), ['generation', 'reference', 'policy-forward', 'policy-backward', 'reward-forward', 'reward-backward', 'optimizer', 'evaluation']);
});

test.run();
