// Fast generation on the gpt_neox fixture: the head on the last position only; GPU and host samplers agree on
// greedy tokens; dropping finished rows from the batch (compaction) changes no token; a prompt's sampled tokens
// do not depend on its batch (row ids); rollout() in batches returns every prompt's row in order, with rates.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Tensor } from '../../engine/tensor.ts';
import type { GenerationOptions } from '../../models/causal_lm.ts';
import { rollout } from '../../models/rollout.ts';
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

test('GPU and host samplers pick the same greedy tokens', async () => {
  const gpu = await tokensOf(prompts, { maxNewTokens: 12 });
  assert.equal(await tokensOf(prompts, { maxNewTokens: 12, sampler: 'host' }), gpu);
});

test('dropping finished rows changes no token (greedy, host and GPU sampling); the batch does shrink', async () => {
  const selectRows = KVCache.prototype.selectRows;
  let compactions = 0;
  KVCache.prototype.selectRows = function (rows: readonly number[]) { compactions++; return selectRows.call(this, rows); };
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
    KVCache.prototype.selectRows = selectRows;
  }
});

test('GPU sampler: a prompt draws the same tokens alone as in a batch, given its row id; the same seed the same tokens', async () => {
  const opts = { maxNewTokens: 10, temperature: 1, topP: 0.95, seed: 21 };
  const batch = await tokensOf(prompts, opts);
  assert.equal(await tokensOf(prompts, opts), batch);
  assert.equal(await tokensOf([prompts[2]], { ...opts, rowIds: [2] }), [batch[2]]);
  assert.not.equal(await tokensOf([prompts[2]], opts), [batch[2]], 'row id 0 draws other numbers');
});

test('rollout: batches longest first, rows back in the prompts\' order; timing', async () => {
  const many = [...prompts, randInt(7, 128, 6), randInt(2, 128, 7)];
  const opts = { maxNewTokens: 6, temperature: 1, topK: 30, seed: 8, eosTokenIds: [3, 50] };
  const r = await rollout(fx.model, many, { ...opts, batchSize: 3 });
  assert.is(r.rows.length, many.length);
  for (const [i, p] of many.entries()) {
    const alone = await fx.model.generate([p], { ...opts, rowIds: [i] });
    assert.equal(r.rows[i], alone.rows[0], `prompt ${i}`);
  }
  const t = r.timing;
  assert.is(t.promptTokens, many.reduce((n, p) => n + p.length, 0));
  assert.is(t.generatedTokens, r.rows.reduce((n, row) => n + row.tokens.length, 0));
  assert.ok(t.seconds > 0 && Math.abs(t.tokensPerSecond - t.generatedTokens / t.seconds) < 1e-9);
  assert.ok(t.steps >= 3 && t.steps <= 3 * 6, `${t.steps} steps in 3 batches of up to 6`);
  assert.ok(t.recordSeconds > 0 && t.recordSeconds < t.seconds, `recording ${t.recordSeconds} s of ${t.seconds} s`);
  await rollout(fx.model, many, { ...opts, batchSize: 0 }).then(() => assert.unreachable('batchSize 0'), (e: Error) => assert.ok(e instanceof SamplingError));
});

test.run();
