// The audit of tiny IRFT and RFT runs (train/demo.ts): per phase, the ledger's FLOPs against the analytic model
// (train/audit_model.ts) fed with the workloads the run recorded.
//   products   every matrix product (bias epilogues, the head on all positions, the score head on the last) and the
//              optimizer's update and grad norm: within 2% of the analytic count
//   attention  the kernels compute whole tiles at the diagonal (masked entries inside included), the analytic model
//              the visible keys: at least the analytic count, at most the square's 2T / (T + 1) of it
//   all ops    also counts norms, GELU, rotary, log-softmax and sampling, which the analytic model leaves out: at a
//              hidden size of 64 they add ~10-15%
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEMO_DEFAULTS, runDemo, type Method } from '../train/demo.ts';
import { initGpu } from './util.ts';

async function tinyRun(method: Method) {
  await initGpu();
  return runDemo({ ...DEMO_DEFAULTS, methods: [method], baseSteps: 2, steps: 3, batch: 8, evalSize: 8, evalEvery: 3, rewardSteps: 2, stages: 2 });
}

function checkAudit(r: Awaited<ReturnType<typeof tinyRun>>, phases: string[]) {
  const T = DEMO_DEFAULTS.maxDigits * 2 + 4; // the longest sequence
  for (const phase of phases) {
    const k = r.kinds.find((x) => x.phase === phase);
    assert.ok(k && k.analyticProducts > 0, `phase ${phase}: no analytic count`);
    const products = k!.products / k!.analyticProducts;
    assert.ok(Math.abs(products - 1) <= 0.02, `phase ${phase}: products ledger / analytic = ${products}`);
    if (k!.analyticAttention > 0) {
      const attention = k!.attention / k!.analyticAttention;
      assert.ok(attention >= 1 - 1e-9 && attention <= (2 * T) / (T + 1), `phase ${phase}: attention ledger / analytic = ${attention}`);
    }
    const all = r.audit.find((a) => a.phase === phase)!;
    assert.ok(all.ledgerFlops >= all.analyticFlops * 0.98 && all.ledgerFlops <= all.analyticFlops * 1.25, `phase ${phase}: ledger / analytic = ${all.ledgerFlops / all.analyticFlops}`);
  }
}

test('audit of a tiny IRFT run: generation, reference, policy forward and backward, optimizer, evaluation', async () => {
  checkAudit(await tinyRun('irft'), ['generation', 'reference', 'policy-forward', 'policy-backward', 'optimizer', 'evaluation']);
});

test('audit of a tiny RFT run: the reward model\'s phases and the rollout scoring too', async () => {
  checkAudit(await tinyRun('rft'), ['generation', 'reference', 'policy-forward', 'policy-backward', 'reward-forward', 'reward-backward', 'optimizer', 'rollout', 'reward', 'evaluation']);
});

test.run();
