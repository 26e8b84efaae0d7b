// End to end on the engine: the FLOP ledger against hand counts, one submit per step, no leak, and the demo's pieces.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { pool } from '../../engine/pool.ts';
import { pipelineCount, submitCount, sync } from '../../engine/runtime.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { matmul } from '../../engine/ops/matmul.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { AdamW } from '../../engine/optim.ts';
import { rng } from '../../engine/random.ts';
import { copyBatch } from '../support/copy_task.ts';
import { DEMO_CONFIG, DEMO_DEFAULTS, metricsTable, runDemo, writeDemoOutputs } from '../../train/demo.ts';
import { CausalLM } from '../../models/causal_lm.ts';
import { initParameters } from '../../models/init.ts';
import { initGpu, randn, upload } from '../support/util.ts';

function flopsOf(op: string, phase: string): number {
  return ledger.all().filter((e) => e.op === op && e.phase === phase).reduce((s, e) => s + e.flops, 0);
}

test('ledger: a matmul chain, forward and backward, by hand', async () => {
  await initGpu();
  const [M, K, N, P] = [7, 33, 13, 5];
  const a = upload(randn(M * K, 1), [M, K], true), b = upload(randn(K * N, 2), [K, N], true), c = upload(randn(N * P, 3), [N, P], true);
  ledger.reset();
  const y = tidy(() => ledger.inPhase('forward', () => matmul(matmul(a, b), c)));
  tidy(() => backward(y, upload(randn(M * P, 4), [M, P])));
  await sync();
  assert.is(flopsOf('matmul', 'forward'), 2 * M * K * N + 2 * M * N * P);
  // dX = dY·Cᵀ, dC = Xᵀ·dY, dA = dX·Bᵀ, dB = Aᵀ·dX.
  assert.is(flopsOf('matmulBackward', 'backward'), 2 * M * P * N + 2 * N * M * P + 2 * M * N * K + 2 * K * M * N);
  const fwd = ledger.all().filter((e) => e.phase === 'forward');
  assert.is(fwd.reduce((s, e) => s + e.bytesRead, 0), 4 * (M * K + K * N) + 4 * (M * N + N * P));
  assert.is(fwd.reduce((s, e) => s + e.bytesWritten, 0), 4 * (M * N + M * P));
  const json = JSON.parse(JSON.stringify(ledger.toJSON()));
  assert.is(json.total.flops, ledger.total().flops);
  for (const t of [a, b, c, y]) { t.grad?.dispose(); t.dispose(); }
});

test('ledger: one training step of the demo model, matmul FLOPs by hand', async () => {
  const c = DEMO_CONFIG, B = 4, L = 5, T = 2 * L, C = c.hidden, V = c.vocabSize, I = c.intermediate;
  const model = new CausalLM(c, initParameters(c, 7)), params = model.params;
  const opt = new AdamW(params.entries(), { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
  const { ids, targets } = copyBatch(rng(3), B, L);
  ledger.reset();
  const loss = tidy(() => {
    const l = ledger.inPhase('forward', () => crossEntropy(reshape(model.forward(Tensor.fromArray(ids, [B, T], 'i32')), [B * T, V]), Tensor.fromArray(targets, [B * T], 'i32')));
    backward(l);
    return l;
  });
  ledger.inPhase('optimizer', () => opt.step());
  await loss.item();
  const tokens = B * T;
  // Per layer: qkv C->3C, dense C->C, MLP C->I->C, each with a bias epilogue (one add per output); then the head C->V.
  const products = c.layers * 2 * tokens * (C * 3 * C + C * C + 2 * C * I) + 2 * tokens * C * V;
  const biasAdds = c.layers * tokens * (3 * C + C + I + C);
  assert.is(flopsOf('matmul', 'forward'), products + biasAdds);
  // Every matmul's input and weight need gradients: two products of the same size each; a bias gradient sums its rows.
  assert.is(flopsOf('matmulBackward', 'backward'), 2 * products + biasAdds);
  const nParams = params.specs.reduce((s, p) => s + p.shape.reduce((x, y) => x * y, 1), 0);
  assert.is(flopsOf('adamw', 'optimizer'), 15 * nParams);
  assert.ok(ledger.byPhase().map((r) => r.key).includes('backward'));
  loss.dispose(); opt.dispose(); params.dispose();
});

test('training steps: one submit each, no new pipelines, no leak', async () => {
  const c = DEMO_CONFIG, B = 4, L = 4, T = 2 * L;
  const model = new CausalLM(c, initParameters(c, 11)), params = model.params;
  const opt = new AdamW(params.entries(), { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 });
  const data = rng(5);
  const live: number[] = [], submits: number[] = [], pipes: number[] = [];
  for (let step = 0; step < 6; step++) {
    const { ids, targets } = copyBatch(data, B, L);
    const s0 = submitCount();
    const loss = tidy(() => {
      const l = crossEntropy(reshape(model.forward(Tensor.fromArray(ids, [B, T], 'i32')), [B * T, c.vocabSize]), Tensor.fromArray(targets, [B * T], 'i32'));
      backward(l);
      return l;
    });
    opt.step();
    opt.zeroGrad();
    assert.ok(Number.isFinite(await loss.item()));
    loss.dispose();
    submits.push(submitCount() - s0);
    live.push(pool.liveBytes);
    pipes.push(pipelineCount());
  }
  // Step 1 allocates optimizer states; from then on live memory is flat.
  assert.equal(live.slice(2), live.slice(1, -1), `live bytes per step: ${live}`);
  assert.equal(submits.slice(1), submits.slice(1).map(() => 1), `submits per step: ${submits}`);
  assert.equal(pipes.slice(1), pipes.slice(1).map(() => pipes[1]), `pipelines: ${pipes}`);
  opt.dispose(); params.dispose();
});

test('the demo: base, SFT, IRFT and RFT from it, finite held-out metrics, every phase in the ledger, the outputs', async () => {
  const r = await runDemo({ ...DEMO_DEFAULTS, baseSteps: 6, steps: 4, batch: 8, evalSize: 16, evalEvery: 2, rewardSteps: 2, stages: 2 });
  assert.equal(r.methods.map((m) => m.method), ['sft', 'irft', 'rft']);
  assert.equal(DEMO_DEFAULTS.ops, ['S', 'R']);
  for (const s of r.samples) assert.ok(/^[SR]\d{3,5}=$/.test(s.prompt), `a prompt outside the demo's task: ${s.prompt}`);
  for (const m of [r.base, ...r.methods]) {
    for (const [k, v] of Object.entries(m.final)) assert.ok(Number.isFinite(v), `${m.method} ${k} = ${v}`);
    assert.ok(m.final.score >= 0 && m.final.score <= 1 && m.final.pair_accuracy >= 0 && m.final.pair_accuracy <= 1);
    if (m.method !== 'base') assert.equal(m.records.filter((x) => x.type === 'eval').map((x) => x.step), [0, 2, 4], `${m.method} eval steps`);
  }
  const phases = r.audit.filter((a) => a.ledgerFlops > 0).map((a) => a.phase);
  for (const p of ['generation', 'reference', 'policy-forward', 'policy-backward', 'reward-forward', 'reward-backward', 'optimizer', 'evaluation'])
    assert.ok(phases.includes(p), `no FLOPs in phase ${p}: ${phases}`);
  for (const a of r.audit) if (a.ledgerFlops > 0) assert.ok(a.analyticFlops > 0, `phase ${a.phase} has no analytic count`);
  const dir = mkdtempSync(join(tmpdir(), 'juice-demo-'));
  try {
    const files = await writeDemoOutputs(r, dir);
    for (const f of ['base.jsonl', 'sft.jsonl', 'irft.jsonl', 'rft.jsonl', 'results.json', 'ledger.json', 'demo.svg']) assert.ok(files.includes(join(dir, f)), `no ${f}`);
    assert.match(readFileSync(join(dir, 'demo.svg'), 'utf8'), /^<svg/);
    const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
    assert.is(results.methods.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(/irft/.test(metricsTable(r)));
});

test.run();
