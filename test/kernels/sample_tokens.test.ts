// The GPU sampler (kernels/sample_tokens.wgsl) against the host's: greedy equals the first argmax; draws follow
// samplingDistribution (float64, transformers' warpers) by a chi-square test and never pick an excluded token;
// the same (seed, step - first step, row id) gives the same token, wherever and whenever a row joins a batch.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import { sampleTokens } from '../../engine/ops/sample_tokens.ts';
import { sampleTokensCall, sampleTokensPasses, sampleTokensWorkgroupSize } from '../../kernels/sample_tokens.ts';
import { KernelError, type DeviceLimits } from '../../kernels/spec.ts';
import { argmax, samplingDistribution, type SamplingOptions } from '../../models/sampling.ts';
import { initGpu, randn } from '../support/util.ts';

/** The 0.999 quantile of the chi-square distribution with 1..12 degrees of freedom. */
const CHI2_999 = [NaN, 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588, 31.264, 32.909];

/** The counters i32 [rows, 2] of rows with these ids, first drawing at these steps (0 by default). */
function counters(ids: readonly number[], first: readonly number[] = ids.map(() => 0)): Tensor {
  return Tensor.fromArray(ids.flatMap((id, r) => [id, first[r]]), [ids.length, 2], 'i32');
}

/** Tokens of `rows` copies of one row of logits, row ids 0..rows-1, at each of `steps` steps. */
async function drawMany(logits: ArrayLike<number>, opts: SamplingOptions & { seed?: number }, rows: number, steps: number): Promise<Int32Array> {
  const V = logits.length;
  const all = new Float32Array(rows * V);
  for (let r = 0; r < rows; r++) all.set(Array.from(logits), r * V);
  const out = new Int32Array(rows * steps);
  await tidyAsync(async () => {
    const x = Tensor.fromArray(all, [rows, V]);
    const rowCounters = counters(Array.from({ length: rows }, (_, r) => r));
    const sampling = { temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1, seed: opts.seed ?? 0 };
    for (let step = 0; step < steps; step++) out.set(await sampleTokens(x, rowCounters, { ...sampling, step }).toArray() as Int32Array, step * rows);
  });
  return out;
}

/** Chi-square of the draws' counts against probs over the tokens with mass; throws if a token without mass was drawn. */
function chiSquare(draws: Int32Array, probs: Float64Array, what: string): { chi2: number; df: number } {
  const counts = new Array(probs.length).fill(0);
  for (const t of draws) counts[t]++;
  let chi2 = 0, kept = 0;
  probs.forEach((p, i) => {
    if (p === 0) { assert.is(counts[i], 0, `${what}: token ${i} is excluded but was drawn ${counts[i]} times`); return; }
    kept++;
    const expected = p * draws.length;
    chi2 += (counts[i] - expected) ** 2 / expected;
  });
  return { chi2, df: kept - 1 };
}

test('no GPU: passes and cost by options; V and options out of range are refused', () => {
  const limits = { maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupStorageSize: 16384, maxComputeWorkgroupsPerDimension: 65535 } as DeviceLimits;
  assert.equal(sampleTokensPasses(100, { temperature: 0, topK: 0, topP: 1 }), { counting: 1, weighted: 0 });
  assert.equal(sampleTokensPasses(100, { temperature: 1, topK: 0, topP: 1 }), { counting: 1, weighted: 1 });
  assert.equal(sampleTokensPasses(100, { temperature: 1, topK: 100, topP: 1 }), { counting: 1, weighted: 1 }, 'top-k = V keeps all');
  assert.equal(sampleTokensPasses(100, { temperature: 1, topK: 5, topP: 0.9 }), { counting: 2, weighted: 66 });
  const greedy = sampleTokensCall(limits, 4, 1000, { temperature: 0, topK: 0, topP: 1, seed: 1, step: 0 });
  assert.equal(greedy.cost, { flops: 3 * 4000, bytesRead: 4 * 4000 + 32, bytesWritten: 16 });
  // 16 logits a thread or more, at least 32 threads (or V), at most 256.
  assert.equal([8, 300, 1000, 32000].map((V) => sampleTokensWorkgroupSize(limits, V)), [8, 32, 64, 256]);
  assert.is(greedy.constants!.WG, 64);
  assert.throws(() => sampleTokensCall(limits, 1, 2 ** 24, { temperature: 0, topK: 0, topP: 1, seed: 0, step: 0 }), (e: Error) => e instanceof KernelError);
  assert.throws(() => sampleTokensCall(limits, 1, 8, { temperature: 1, topK: 0, topP: 0, seed: 0, step: 0 }), (e: Error) => e instanceof KernelError);
});

test('greedy: the first argmax (ties included) of rows of length 1, 7, 300 and 1000, negative and -inf logits', async () => {
  await initGpu();
  for (const V of [1, 7, 300, 1000]) {
    const rows = 6;
    const x = Float32Array.from(randn(rows * V, V, 3));
    if (V > 1) {
      x.fill(-2, V, 2 * V); x[V + V - 1] = -1; x[V + 1] = -1; // row 1: a tie, the first index wins
      x.fill(-Infinity, 2 * V, 3 * V); x[3 * V - 1] = -50; // row 2: -inf but one
      x.fill(0, 3 * V, 4 * V); // row 3: all equal: index 0
    }
    const ids = await tidyAsync(async () => sampleTokens(Tensor.fromArray(x, [rows, V]), counters(new Array(rows).fill(0)), { temperature: 0, topK: 0, topP: 1, seed: 0, step: 0 }).toArray());
    assert.equal(Array.from(ids), Array.from({ length: rows }, (_, r) => argmax(x.subarray(r * V, (r + 1) * V))), `V = ${V}`);
  }
});

test('draws follow samplingDistribution by chi-square (0.999) and never pick an excluded token; V = 8, 300; ties at the cut-offs', async () => {
  await initGpu();
  const eight = [1.3, -0.4, 0.9, 2.1, 0.2, -1.5, 1.7, 0.6];
  const wide = Array.from(randn(300, 21, 1.5));
  wide[10] = wide[20] = wide[30] = 6; // a three-way tie at the top ...
  wide[40] = 5.5;
  const cases: [number[], SamplingOptions][] = [
    [eight, { temperature: 0.7, topK: 5, topP: 0.9 }],
    [eight, { temperature: 1 }],
    [eight, { temperature: 1.3, topP: 0.6 }],
    [eight, { temperature: 0.5, topK: 3 }],
    [[0, 0, 0, 0], { temperature: 1, topP: 0.5 }], // top-p cuts inside a tie: tokens 0 and 1, as the host
    [[3, 1, 3, 3, 0], { temperature: 1, topK: 2 }], // top-k keeps every token tied with the k-th
    [wide, { temperature: 0.8, topK: 2 }], // ... of which top-k 2 keeps all three
    [wide, { temperature: 0.8, topK: 50, topP: 0.95 }],
  ];
  for (const [logits, opts] of cases) {
    const what = `V = ${logits.length} ${JSON.stringify(opts)}`;
    const probs = samplingDistribution(logits, opts);
    const draws = await drawMany(logits, { ...opts, seed: 17 }, 2000, 10);
    const { chi2, df } = chiSquare(draws, probs, what);
    if (df === 0) continue; // one token kept: chiSquare checked that nothing else was drawn
    assert.ok(df < CHI2_999.length, `${what}: ${df} degrees of freedom, more than the table`);
    assert.ok(chi2 < CHI2_999[df], `${what}: chi-square ${chi2.toFixed(2)} >= ${CHI2_999[df]} (${df} degrees of freedom)`);
  }
});

test('the same (seed, step, row id) gives the same tokens; another seed, step or row id others', async () => {
  await initGpu();
  const logits = Array.from(randn(64, 5));
  const opts = { temperature: 1, topP: 0.95 };
  const a = await drawMany(logits, { ...opts, seed: 3 }, 50, 4);
  assert.equal(Array.from(await drawMany(logits, { ...opts, seed: 3 }, 50, 4)), Array.from(a));
  assert.not.equal(Array.from(await drawMany(logits, { ...opts, seed: 4 }, 50, 4)), Array.from(a));
  // Steps and rows draw different numbers: 200 draws of a 64-token distribution are not all one token.
  assert.ok(new Set(a).size > 10);
});

test('a row draws at its own step: row ids 5 and 9 first drawing at steps 3 and 7 draw what they draw from step 0 alone', async () => {
  await initGpu();
  const V = 64, logits = Float32Array.from(randn(V, 6));
  const s = { temperature: 1, topK: 0, topP: 1, seed: 11 };
  const draw = (ids: number[], first: number[], step: number) => tidyAsync(async () => {
    const x = Tensor.fromArray(Float32Array.from({ length: ids.length * V }, (_, i) => logits[i % V]), [ids.length, V]);
    return Array.from(await sampleTokens(x, counters(ids, first), { ...s, step }).toArray());
  });
  const alone: number[][] = [], late: number[][] = [];
  for (let t = 0; t < 12; t++) {
    alone.push([(await draw([5], [0], t))[0], (await draw([9], [0], t))[0]]);
    late.push(await draw([9, 5], [7, 3], t + 7).then(([a, b]) => [0, 0].map((_, k) => (k === 0 ? b : a))));
  }
  // Row 5 draws its token t at step t + 3 and row 9 at t + 7; this batch at step t + 7 is row 5's token t + 4.
  for (let t = 0; t + 4 < 12; t++) assert.is(late[t][0], alone[t + 4][0], `row 5, token ${t + 4}`);
  for (let t = 0; t < 12; t++) assert.is(late[t][1], alone[t][1], `row 9, token ${t}`);
  assert.ok(new Set(alone.map(([a]) => a)).size > 3, 'the draws differ from step to step');
  assert.throws(() => sampleTokens(Tensor.fromArray(logits, [1, V]), Tensor.fromArray([5], [1], 'i32'), { ...s, step: 0 }), /rowCounters must be i32 \[1, 2\]/);
});

test.run();
