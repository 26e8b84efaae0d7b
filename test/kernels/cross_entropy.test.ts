// Fused cross-entropy against a float64 reference: loss, logits gradient, ignored rows, the PyTorch fixture.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward, noGrad, tapeLength } from '../../engine/autodiff.ts';
import { gpu } from '../../engine/gpu.ts';
import { ledger } from '../../engine/ledger.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { pool } from '../../engine/pool.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import { assertClose, download, finiteDiff, initGpu, randInt, randn, rng, upload } from '../support/util.ts';
import { fixture } from '../support/paths.ts';

const FORWARD_TOL = 1e-5;
const GRADIENT_TOL = 1e-4;

/** float64: mean over rows whose target is not ignored of logsumexp(x_r) - x_r[t_r], and its gradient; 0 and 0 when all are ignored. */
function reference(x: Float64Array, targets: Int32Array, V: number, ignoreIndex = -100): { loss: number; dlogits: Float64Array } {
  const count = targets.filter((t) => t !== ignoreIndex).length;
  const dlogits = new Float64Array(x.length);
  let sum = 0;
  targets.forEach((t, r) => {
    if (t === ignoreIndex) return;
    const row = x.subarray(r * V, (r + 1) * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    sum += lse - row[t];
    row.forEach((v, j) => { dlogits[r * V + j] = (Math.exp(v - lse) - (j === t ? 1 : 0)) / count; });
  });
  return { loss: count ? sum / count : 0, dlogits };
}

/** Targets in [0, V) with about a quarter of them replaced by ignoreIndex. */
function someIgnored(rows: number, V: number, seed: number, ignoreIndex = -100): Int32Array {
  const r = rng(seed);
  return randInt(rows, V, seed + 1).map((t) => (r() < 0.25 ? ignoreIndex : t));
}

/** Runs crossEntropy with a random upstream gradient and checks loss and logits.grad against the reference. */
async function check(shape: number[], targets: Int32Array, seed: number, std = 3, ignoreIndex = -100): Promise<void> {
  const V = shape[shape.length - 1];
  const what = `[${shape}] ignoreIndex ${ignoreIndex}`;
  const x = randn(shape.reduce((a, b) => a * b, 1), seed, std);
  const upstream = Math.fround(0.5 + rng(seed + 2)());
  const ref = reference(x, targets, V, ignoreIndex);
  await tidyAsync(async () => {
    const logits = upload(x, shape, true);
    const loss = crossEntropy(logits, Tensor.fromArray(targets, [targets.length], 'i32'), { ignoreIndex });
    assert.equal(loss.shape, []);
    backward(loss, Tensor.fromArray([upstream], []));
    assertClose([await loss.item()], [ref.loss], FORWARD_TOL, `${what} loss`);
    assertClose(await download(logits.grad!), ref.dlogits.map((d) => upstream * d), GRADIENT_TOL, `${what} dlogits`);
    logits.grad!.dispose();
  });
}

test('the float64 reference gradient matches finite differences', () => {
  const V = 6;
  const targets = Int32Array.from([2, -100, 5, 0]);
  const x = randn(targets.length * V, 1, 2);
  const numeric = finiteDiff((y) => reference(y, targets, V).loss, x);
  assertClose(reference(x, targets, V).dlogits, numeric, 1e-7, 'reference dlogits vs finite differences');
});

test('loss and gradient at ragged shapes, some targets ignored', async () => {
  await initGpu();
  const base = pool.liveBytes;
  for (const N of [1, 7, 33]) {
    for (const V of [1, 7, 130, 257, 5000]) await check([N, V], someIgnored(N, V, 10 * N + V), N * V);
  }
  assert.is(pool.liveBytes, base, 'every buffer returned to the pool');
});

test('large logits: the max is subtracted before exp', async () => {
  await initGpu();
  await check([7, 130], someIgnored(7, 130, 3), 4, 100);
});

test('leading dims, and an ignoreIndex that is a valid class', async () => {
  await initGpu();
  await check([2, 3, 7], randInt(6, 7, 5), 6, 3, 3);
});

test('every target ignored: loss 0 and gradient 0, not NaN', async () => {
  await initGpu();
  await tidyAsync(async () => {
    const logits = upload(randn(7 * 130, 7), [7, 130], true);
    const loss = crossEntropy(logits, Tensor.fromArray(new Int32Array(7).fill(-100), [7], 'i32'));
    backward(loss);
    assert.is(await loss.item(), 0);
    assert.ok((await logits.grad!.toArray()).every((g) => g === 0), 'gradient is exactly zero');
    logits.grad!.dispose();
  });
});

test('a target outside [0, V) that is not ignored makes the loss NaN', async () => {
  await initGpu();
  for (const bad of [130, -1]) {
    await tidyAsync(async () => {
      const loss = crossEntropy(upload(randn(3 * 130, 8), [3, 130]), Tensor.fromArray([4, bad, 7], [3], 'i32'));
      assert.ok(Number.isNaN(await loss.item()), `target ${bad}`);
    });
  }
});

test('without a gradient: same loss, no tape entry, no gradient pass', async () => {
  await initGpu();
  const N = 7, V = 257;
  const x = randn(N * V, 9);
  const targets = someIgnored(N, V, 9);
  await tidyAsync(async () => {
    const targetsT = Tensor.fromArray(targets, [N], 'i32');
    const logits = upload(x, [N, V], true);
    const withGrad = await crossEntropy(logits, targetsT).item();
    backward(crossEntropy(logits, targetsT)); // empties the tape
    logits.grad!.dispose();
    ledger.reset();
    const plain = await noGrad(() => crossEntropy(logits, targetsT)).item();
    assert.is(tapeLength(), 0);
    assertClose([plain], [withGrad], 1e-6, 'the loss does not depend on whether the gradient is written');
    const row = ledger.byOp().find((r) => r.key === 'crossEntropy')!;
    assert.equal({ flops: row.flops, bytesRead: row.bytesRead, bytesWritten: row.bytesWritten },
      { flops: 4 * N * V, bytesRead: 4 * N * V + 8 * N, bytesWritten: 4 * N });
    assertClose([plain], [reference(x, targets, V).loss], FORWARD_TOL, 'loss');
  });
});

test('ledger: three forward dispatches, the gradient writes counted in crossEntropy', async () => {
  await initGpu();
  const N = 7, V = 130;
  await tidyAsync(async () => {
    const logits = upload(randn(N * V, 11), [N, V], true);
    ledger.reset();
    const loss = ledger.inPhase('forward', () => crossEntropy(logits, Tensor.fromArray(someIgnored(N, V, 11), [N], 'i32')));
    backward(loss);
    await logits.grad!.toArray();
    logits.grad!.dispose();
    const rows = ledger.all().map((e) => [e.phase, e.op, e.dispatches, e.flops, e.bytesRead, e.bytesWritten]);
    const forward = rows.filter((r) => r[0] === 'forward');
    assert.equal(forward.sort(), [
      ['forward', 'crossEntropy', 1, 9 * N * V, 8 * N * V + 12 * N, 4 * N * V + 4 * N],
      ['forward', 'crossEntropyCount', 1, N, 4 * N, 4],
      ['forward', 'crossEntropyMean', 1, N + 1, 4 * N + 4, 4],
    ]);
  });
});

test('more rows than workgroups per grid dimension: rows fold into y', async () => {
  await initGpu();
  const N = gpu().limits.maxComputeWorkgroupsPerDimension + 2, V = 2; // about 3 s on lavapipe
  const x = randn(N * V, 12);
  const targets = someIgnored(N, V, 12);
  await tidyAsync(async () => {
    const loss = crossEntropy(upload(x, [N, V]), Tensor.fromArray(targets, [N], 'i32'));
    assertClose([await loss.item()], [reference(x, targets, V).loss], FORWARD_TOL, `${N} rows`);
  });
});

test('targets that do not match the rows are rejected', async () => {
  await initGpu();
  await tidyAsync(async () => {
    const logits = upload(randn(3 * 5, 1), [3, 5]);
    assert.throws(() => crossEntropy(logits, Tensor.fromArray([1, 2], [2], 'i32')), /one entry per row/);
    assert.throws(() => crossEntropy(logits, Tensor.fromArray([1, 2, 3], [3], 'f32')), /must be i32/);
    assert.throws(() => crossEntropy(upload([], [3, 0]), Tensor.fromArray([1, 2, 3], [3], 'i32')), /V >= 1/);
  });
});

test('PyTorch fixture: ce.loss and ce.dlogits with -100 targets', async () => {
  await initGpu();
  const file = SafetensorsFile.open(fixture('hf/ops/expected.safetensors'));
  try {
    const shape = file.info('ce.logits').shape;
    const targets = file.read('ce.targets') as Int32Array;
    assert.ok(targets.includes(-100), 'the fixture exercises ignored targets');
    await tidyAsync(async () => {
      const logits = upload(file.read('ce.logits'), shape, true);
      const loss = crossEntropy(logits, Tensor.fromArray(targets, [targets.length], 'i32'));
      backward(loss);
      assertClose([await loss.item()], file.read('ce.loss'), FORWARD_TOL, 'ce.loss');
      assertClose(await download(logits.grad!), file.read('ce.dlogits'), GRADIENT_TOL, 'ce.dlogits');
      logits.grad!.dispose();
    });
  } finally {
    file.close();
  }
});

test.run();
