// Per-token and per-sequence log-likelihoods against a float64 reference (values and gradients, rows longer
// than a workgroup, one-token rows, an id out of range), and the implicit-reward fixture (policy and
// reference models, response masks, margin, loss, the policy's gradients).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { backward } from '../../engine/autodiff.ts';
import { deviceLimits, launch } from '../../engine/launch.ts';
import { Tensor, tidyAsync, tidy } from '../../engine/tensor.ts';
import { crossEntropyCall } from '../../kernels/cross_entropy.ts';
import { LOGIT_ROW_THREADS } from '../../kernels/spec.ts';
import { tokenLogprobsCall } from '../../kernels/token_logprobs.ts';
import { sequenceLogprobs, tokenLogprobs } from '../../train/objectives/logprobs.ts';
import { verifyFolder } from '../../train/verify.ts';
import { assertClose, dot, download, finiteDiff, initGpu, randInt, randn, rng, upload } from '../support/util.ts';

const FORWARD_TOL = 1e-5;
const GRADIENT_TOL = 1e-4;

/**
 * float64: logp[b, t] = x[b, t - 1, ids[b, t]] - logsumexp(x[b, t - 1, :]) for t >= 1 (0 at t = 0), and the
 * gradient of Σ g · logp in the logits.
 */
function reference(x: Float64Array, ids: Int32Array, [B, T, V]: number[], g: Float64Array): { logp: Float64Array; dlogits: Float64Array } {
  const logp = new Float64Array(B * T), dlogits = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) {
    const r = b * T + t - 1, row = x.subarray(r * V, (r + 1) * V), id = ids[b * T + t];
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    logp[b * T + t] = row[id] - lse;
    row.forEach((v, j) => { dlogits[r * V + j] = g[b * T + t] * ((j === id ? 1 : 0) - Math.exp(v - lse)); });
  }
  return { logp, dlogits };
}

test('the float64 reference gradient matches finite differences', () => {
  const shape = [2, 3, 5], ids = randInt(6, 5, 1), g = randn(6, 2);
  const x = randn(30, 3, 2);
  const numeric = finiteDiff((xx) => dot(reference(xx, ids, shape, g).logp, g), x);
  assertClose(reference(x, ids, shape, g).dlogits, numeric, 1e-7, 'reference dlogits');
});

/** tokenLogprobs with a random upstream gradient, against the reference. */
async function checkTokenLogprobs(shape: number[], seed: number): Promise<void> {
  const [B, T, V] = shape;
  const what = `[${shape}]`;
  const x = randn(B * T * V, seed, 3), ids = randInt(B * T, V, seed + 1), g = randn(B * T, seed + 2);
  const ref = reference(x, ids, shape, g);
  await tidyAsync(async () => {
    const logits = upload(x, shape, true);
    const logp = tokenLogprobs(logits, Tensor.fromArray(ids, [B, T], 'i32'));
    assert.equal(logp.shape, [B, T]);
    tidy(() => backward(logp, upload(g, [B, T])));
    assertClose(await download(logp), ref.logp, FORWARD_TOL, `${what} logp`);
    assertClose(await download(logits.grad!), ref.dlogits, GRADIENT_TOL, `${what} dlogits`);
    logits.grad!.dispose();
  });
}

test('tokenLogprobs: values and gradients; rows longer than a workgroup; one-token rows', async () => {
  await initGpu();
  await checkTokenLogprobs([3, 5, 300], 10);
  await checkTokenLogprobs([1, 9, 7], 20);
  // T = 1: nothing is predicted; logp and the gradient are 0 everywhere.
  await tidyAsync(async () => {
    const logits = upload(randn(2 * 7, 30), [2, 1, 7], true);
    const logp = tokenLogprobs(logits, Tensor.fromArray([3, 4], [2, 1], 'i32'));
    tidy(() => backward(logp, upload([1, 1], [2, 1])));
    assert.equal(Array.from(await logp.toArray()), [0, 0]);
    assert.ok((await logits.grad!.toArray()).every((v) => v === 0));
    logits.grad!.dispose();
  });
});

test('a row of logits on every device kind\'s threads (LOGIT_ROW_THREADS) and on one: tokenLogprobs and crossEntropy kernels against float64', async () => {
  await initGpu();
  const [B, T, V] = [2, 6, 3000]; // 3000 logits: 94 threads' worth, capped at 8 on a CPU driver, 128 on a GPU
  const x = randn(B * T * V, 60, 3), ids = randInt(B * T, V, 61);
  const ref = reference(x, ids, [B, T, V], new Float64Array(B * T).fill(1));
  const rows = B * T, targets = Int32Array.from({ length: rows }, (_, r) => ids[r]);
  const ceRef = Array.from({ length: rows }, (_, r) => {
    const row = x.subarray(r * V, (r + 1) * V), max = Math.max(...row);
    return max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) - row[targets[r]];
  });
  await tidyAsync(async () => {
    const logits = upload(x, [B, T, V]), idsT = Tensor.fromArray(ids, [B, T], 'i32'), targetsT = Tensor.fromArray(targets, [rows], 'i32');
    for (const threads of [...Object.values(LOGIT_ROW_THREADS), 1]) {
      const call = tokenLogprobsCall(deviceLimits(), B, T, V, { first: 0, rows: V }, threads);
      assert.is(call.constants!.WG, Math.min(threads, 128), `${threads}: its workgroup`);
      const [logp, lse] = [Tensor.empty([B, T]), Tensor.empty([B, T])];
      launch(call, [logits, idsT], [null, logp, lse]);
      assertClose(await download(logp), ref.logp, FORWARD_TOL, `tokenLogprobs, at most ${threads} threads a row`);
      const rowLoss = Tensor.empty([rows]);
      launch(crossEntropyCall(deviceLimits(), rows, V, -100, false, threads), [logits.reshape([rows, V]), targetsT, null], [null, rowLoss]);
      assertClose(await download(rowLoss), ceRef, FORWARD_TOL, `crossEntropy, at most ${threads} threads a row`);
    }
  });
});

test('tokenLogprobs: an id out of range gives NaN at its position only', async () => {
  await initGpu();
  await tidyAsync(async () => {
    const logp = await tokenLogprobs(upload(randn(12, 40), [1, 3, 4]), Tensor.fromArray([0, 4, 1], [1, 3], 'i32')).toArray();
    assert.is(logp[0], 0);
    assert.ok(Number.isNaN(logp[1]));
    assert.ok(Number.isFinite(logp[2]) && logp[2] < 0);
  });
});

test('sequenceLogprobs: masked sums per row and their gradient', async () => {
  await initGpu();
  const [B, T, V] = [3, 6, 11];
  const x = randn(B * T * V, 50, 2), ids = randInt(B * T, V, 51);
  // Prompts of 2, 3 and 1 tokens, then responses; the last row ends in 2 tokens of padding.
  const r = rng(52);
  const promptLength = [2, 3, 1], responseEnd = [T, T, T - 2];
  const mask = Float64Array.from({ length: B * T }, (_, i) => {
    const b = Math.floor(i / T), t = i % T;
    return t >= promptLength[b] && t < responseEnd[b] ? 1 : 0;
  });
  const seed = Float64Array.from({ length: B }, () => Math.fround(r() + 0.5));
  const g = mask.map((m, i) => m * seed[Math.floor(i / T)]); // d Σ_b seed[b] · sum_b / d logp
  const ref = reference(x, ids, [B, T, V], g);
  const sums = Array.from({ length: B }, (_, b) => mask.slice(b * T, (b + 1) * T).reduce((s, m, t) => s + m * ref.logp[b * T + t], 0));
  await tidyAsync(async () => {
    const logits = upload(x, [B, T, V], true);
    const seq = sequenceLogprobs(tokenLogprobs(logits, Tensor.fromArray(ids, [B, T], 'i32')), upload(mask, [B, T]));
    assert.equal(seq.shape, [B]);
    tidy(() => backward(seq, upload(seed, [B])));
    assertClose(await download(seq), sums, FORWARD_TOL, 'sequence log-probs');
    assertClose(await download(logits.grad!), ref.dlogits, GRADIENT_TOL, 'dlogits through the mask');
    logits.grad!.dispose();
  });
});

test('irft fixture: sequence log-probs of policy and reference, margin, loss, policy gradients (juice verify)', async () => {
  await initGpu();
  const report = await verifyFolder(fileURLToPath(new URL('../fixtures/hf/irft/', import.meta.url)));
  assert.is(report.kind, 'irft');
  const names = report.checks.map((c) => c.name);
  for (const n of ['policy_logp_demo', 'policy_logp_gen', 'ref_logp_demo', 'ref_logp_gen', 'margin', 'loss', 'grad.lm_head.weight']) assert.ok(names.includes(n), `no check of ${n}`);
  for (const c of report.checks) assert.ok(c.pass, `irft ${c.name}: relative error ${c.relErr} > ${c.tol}`);
});

test.run();
