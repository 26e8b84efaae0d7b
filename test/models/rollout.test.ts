// Fast generation on the gpt_neox fixture: the head on the last position only; GPU and host samplers agree on
// greedy tokens; dropping finished rows from the batch (compaction) changes no token; a prompt's sampled tokens
// do not depend on its batch (row ids); rollout() in batches returns every prompt's row in order, with rates.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor } from '../../engine/tensor.ts';
import type { GenerationOptions } from '../../models/causal_lm.ts';
import { ledger } from '../../engine/ledger.ts';
import { rollout } from '../../models/rollout.ts';
import { attentionPlanOf } from '../../train/audit.ts';
import { phaseFlops } from '../../train/audit_model.ts';
import { SamplingError } from '../../models/sampling.ts';
import { KVCache } from '../../models/self_attention.ts';
import { FIXTURE_PROMPTS, gptNeoxFixture } from '../support/generation_fixture.ts';
import { randInt } from '../support/util.ts';

const fx = gptNeoxFixture(test);
const prompts = FIXTURE_PROMPTS;
const tokensOf = async (ps: Int32Array[], opts: GenerationOptions) => (await fx.model.generate(ps, opts)).rows.map((r) => r.tokens);

test('the head runs on the last position only: one row per batch row and step', async () => {
  const head = fx.model.head;
  const rowsSeen: number[] = [];
  fx.model.head = (hidden: Tensor) => { rowsSeen.push(hidden.numel / fx.model.config.hidden); return head.call(fx.model, hidden); };
  try {
    await fx.model.generate(prompts.slice(0, 3), { maxNewTokens: 4, compact: false });
  } finally {
    fx.model.head = head;
  }
  assert.equal(rowsSeen, [3, 3, 3, 3]);
});

test('KVCache.joined: each row\'s filled columns right-aligned at the longest row\'s, room after them, part after part, layer by layer', async () => {
  const KVH = 2, D = 4;
  const cache = (B: number, S: number, pads: number[], length: number, scale: number) => {
    const values = (f: number) => Float32Array.from({ length: B * KVH * S * D }, (_, i) => scale * f * (i + 1));
    const c = new KVCache(B, KVH, S, D, pads, true, { k: Tensor.fromArray(values(1), [B, KVH, S, D]), v: Tensor.fromArray(values(-0.5), [B, KVH, S, D]) });
    c.length = length;
    return c;
  };
  // a: 6 columns filled, rows padded 1, 3, 2; b: 3 filled, padded 0 and 2. Rows 2, 1 of a and 1, 0 of b hold 4, 3, 1 and 3 keys.
  // Two layers each, with other values.
  const a = [cache(3, 8, [1, 3, 2], 6, 1), cache(3, 8, [1, 3, 2], 6, 2)], b = [cache(2, 4, [0, 2], 3, 10), cache(2, 4, [0, 2], 3, 20)];
  const parts = [{ layers: a, rows: [2, 1] }, { layers: b, rows: [1, 0] }];
  const out = KVCache.joined(parts, 5);
  try {
    assert.is(out.length, 2);
    for (const [l, layer] of out.entries()) {
      assert.is(layer.length, 4);
      assert.equal(layer.padLengths, [0, 1, 3, 1]);
      assert.equal(layer.k.shape, [4, KVH, 9, D]);
      const sources = parts.flatMap((p) => p.rows.map((r) => ({ cache: p.layers[l], row: r })));
      for (const name of ['k', 'v'] as const) {
        const got = await layer[name].toArray(), S = 9;
        for (const [r, { cache: src, row }] of sources.entries()) {
          const want = await src[name].toArray(), srcS = src.maxLength;
          for (let h = 0; h < KVH; h++) for (let c = 0; c < S; c++) for (let d = 0; d < D; d++) {
            const at = ((r * KVH + h) * S + c) * D + d;
            if (c >= layer.length || c < layer.padLengths[r]) assert.is(got[at], 0, `layer ${l} ${name} row ${r} column ${c}: padding and room are zero`);
            else {
              const from = src.padLengths[row] + (c - layer.padLengths[r]);
              assert.is(got[at], want[((row * KVH + h) * srcS + from) * D + d], `layer ${l} ${name} row ${r} column ${c}`);
            }
          }
        }
      }
    }
    assert.throws(() => KVCache.joined([{ layers: a, rows: [3] }], 1), /rows \[3\] must be some of \[0, 3\)/);
    assert.throws(() => KVCache.joined([{ layers: a, rows: [] }], 1), /needs a row/);
    assert.throws(() => KVCache.joined([], 1), /needs a part/);
    assert.throws(() => KVCache.joined([{ layers: a, rows: [0] }, { layers: [b[0]], rows: [0] }], 1), /parts of 1 and 2 layers/);
  } finally {
    for (const c of [...a, ...b, ...out]) c.dispose();
  }
});

test('GPU and host samplers pick the same greedy tokens', async () => {
  const gpu = await tokensOf(prompts, { maxNewTokens: 12 });
  assert.equal(await tokensOf(prompts, { maxNewTokens: 12, sampler: 'host' }), gpu);
});

test('dropping finished rows changes no token (greedy, host and GPU sampling); the batch does shrink', async () => {
  const joined = KVCache.joined;
  let compactions = 0;
  KVCache.joined = (parts, room) => { compactions++; return joined.call(KVCache, parts, room); };
  try {
    for (const opts of [{}, { temperature: 1, seed: 5 }, { temperature: 0.8, topK: 20, topP: 0.9, seed: 6, sampler: 'host' as const }]) {
      // Many EOS ids: rows finish at different steps.
      const base = { ...opts, maxNewTokens: 16, eosTokenIds: Array.from({ length: 12 }, (_, i) => 10 * i + 3) };
      const before = compactions;
      const compacted = await fx.model.generate(prompts, base);
      assert.ok(compactions > before, `${JSON.stringify(opts)}: no compaction happened`);
      const whole = await fx.model.generate(prompts, { ...base, compact: false });
      assert.equal(compacted.rows, whole.rows, JSON.stringify(opts));
      assert.is(compacted.steps, whole.steps);
      assert.ok(compacted.rows.some((r) => r.finish === 'eos') && compacted.rows.some((r) => r.tokens.length > 2), 'rows finish at different steps');
    }
  } finally {
    KVCache.joined = joined;
  }
});

test('GPU sampler: a prompt draws the same tokens alone as in a batch, given its row id; the same seed the same tokens', async () => {
  const opts = { maxNewTokens: 10, temperature: 1, topP: 0.95, seed: 21 };
  const batch = await tokensOf(prompts, opts);
  assert.equal(await tokensOf(prompts, opts), batch);
  assert.equal(await tokensOf([prompts[2]], { ...opts, rowIds: [2] }), [batch[2]]);
  assert.not.equal(await tokensOf([prompts[2]], opts), [batch[2]], 'row id 0 draws other numbers');
});

test('rollout: prompts join the batch as rows finish, each row as it is alone, back in the prompts\' order; timing', async () => {
  const many = [...prompts, randInt(7, 128, 6), randInt(2, 128, 7), randInt(5, 128, 8), randInt(9, 128, 9)];
  // Many EOS ids: rows finish at different steps, so that the batch compacts and prompts join running rows.
  const opts = { maxNewTokens: 10, temperature: 1, topK: 30, seed: 8, eosTokenIds: Array.from({ length: 25 }, (_, i) => 5 * i + 3) };
  const joined = KVCache.joined;
  let mixed = 0; // joins of running rows (padded) and joiners (shorter: prompts go in longest first)
  KVCache.joined = (parts, room) => { if (parts.length === 2 && parts.every((p) => p.rows.length > 0)) mixed++; return joined.call(KVCache, parts, room); };
  const r = await rollout(fx.model, many, { ...opts, batchSize: 4 }).finally(() => { KVCache.joined = joined; });
  assert.ok(mixed >= 2, `${mixed} joins of running rows and joiners`);
  assert.is(r.rows.length, many.length);
  for (const [i, p] of many.entries()) {
    const alone = await fx.model.generate([p], { ...opts, rowIds: [i] });
    assert.equal(r.rows[i], alone.rows[0], `prompt ${i}`);
  }
  assert.ok(r.rows.some((row) => row.finish === 'eos') && r.rows.some((row) => row.tokens.length > 3), 'rows finish at different steps');
  // Prompt passes: the first batch's, then the joiners'; a decode step holds old rows and joiners, never more than 4.
  const promptPasses = r.passes.filter((p) => p.filled === 0);
  assert.ok(promptPasses.reduce((n, p) => n + p.count, 0) === many.length && promptPasses.length > 1, `prompt passes ${JSON.stringify(promptPasses)}`);
  const decodeRows = r.passes.filter((p) => p.filled > 0).reduce((n, p) => n + p.count, 0);
  assert.ok(r.timing.steps - promptPasses.length > 0 && decodeRows <= 4 * (r.timing.steps - promptPasses.length));
  const t = r.timing;
  assert.is(t.promptTokens, many.reduce((n, p) => n + p.length, 0));
  assert.is(t.generatedTokens, r.rows.reduce((n, row) => n + row.tokens.length, 0));
  assert.ok(t.seconds > 0 && Math.abs(t.tokensPerSecond - t.generatedTokens / t.seconds) < 1e-9);
  assert.ok(t.steps >= 10 && t.steps < many.length * 10, `${t.steps} steps for ${many.length} prompts of up to 10 tokens, 4 at a time`);
  assert.ok(t.recordSeconds > 0 && t.recordSeconds < t.seconds, `recording ${t.recordSeconds} s of ${t.seconds} s`);
  await rollout(fx.model, many, { ...opts, batchSize: 0 }).then(() => assert.unreachable('batchSize 0'), (e: Error) => assert.ok(e instanceof SamplingError));
});

test('joins at the edges: one row in flight, one new token, the host sampler, stop strings', async () => {
  const eos = Array.from({ length: 25 }, (_, i) => 5 * i + 3);
  const greedy = await tokensOf(prompts, { maxNewTokens: 10, eosTokenIds: eos });
  assert.equal((await rollout(fx.model, prompts, { maxNewTokens: 10, eosTokenIds: eos, batchSize: 1 })).rows.map((r) => r.tokens), greedy, 'one row at a time');
  const one = await rollout(fx.model, prompts, { maxNewTokens: 1, batchSize: 2 });
  assert.equal(one.rows.map((r) => r.tokens.length), prompts.map(() => 1));
  assert.ok(one.passes.every((p) => p.filled === 0) && one.timing.steps === 3, `${one.timing.steps} prompt passes of 2, 2 and 1 rows`);
  // The host sampler draws from one stream: its rows are well formed and greedy ones equal the GPU's.
  const host = await rollout(fx.model, prompts, { maxNewTokens: 10, eosTokenIds: eos, batchSize: 2, sampler: 'host' });
  assert.equal(host.rows.map((r) => r.tokens), greedy);
  const sampled = await rollout(fx.model, prompts, { maxNewTokens: 10, eosTokenIds: eos, batchSize: 2, sampler: 'host', temperature: 1, seed: 3 });
  assert.ok(sampled.rows.every((r) => r.tokens.length >= 1 && r.tokens.length <= 10 && (r.finish === 'eos') === eos.includes(r.tokens[r.tokens.length - 1])));
  // Stop strings end joined rows as they end rows alone.
  const decoder = { decode: (ids: readonly number[]) => ids.map((id) => 'abcd'[id % 4]).join('') };
  const stops = { maxNewTokens: 12, stopStrings: ['aa', 'dcb'], decoder, temperature: 0.9, seed: 2 };
  const joined = await rollout(fx.model, prompts, { ...stops, batchSize: 2 });
  for (const [i, p] of prompts.entries()) assert.equal(joined.rows[i], (await fx.model.generate([p], { ...stops, rowIds: [i] })).rows[0], `prompt ${i}`);
  assert.ok(joined.rows.some((r) => r.finish === 'stop'));
});

test('the audit counts a rollout with joins, pipelined or not: the ledger\'s FLOPs are the analytic model\'s over its passes', async () => {
  const many = [...prompts, randInt(7, 128, 6), randInt(2, 128, 7), randInt(5, 128, 8), randInt(9, 128, 9)];
  const sampling = { temperature: 1, topK: 30, topP: 1 };
  const opts = { ...sampling, maxNewTokens: 10, seed: 8, eosTokenIds: Array.from({ length: 25 }, (_, i) => 5 * i + 3), batchSize: 4 };
  const c = fx.model.config;
  for (const pipelined of [false, true]) {
    ledger.reset();
    const r = await ledger.inPhaseAsync('generation', () => rollout(fx.model, many, { ...opts, pipelined }));
    const counted = ledger.all().filter((e) => e.phase === 'generation').reduce((n, e) => n + e.flops, 0);
    const analytic = phaseFlops(c, 'generation', { passes: r.passes, sampling, attentionPlan: attentionPlanOf(c.headDim) });
    assert.ok(Math.abs(counted / analytic - 1) < 1e-12, `pipelined ${pipelined}: ledger ${counted} / analytic ${analytic}`);
    assert.ok(r.passes.filter((p) => p.filled === 0).length > 1, 'prompts joined');
  }
});

test.run();
