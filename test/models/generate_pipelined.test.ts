// Pipelined generation (the GPU sampler records step s+1 before reading step s back) against the unpipelined loop
// on the gpt_neox fixture: the same rows (tokens, finish, text) for EOS, stop strings, rows finishing at different
// steps with and without compaction, maxNewTokens 1 and 0, a single row, prompts joining the batch; the steps it computes, the discarded
// lookahead included; and the passes Generation reports (what the audit counts) against those the model really ran.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Tensor } from '../../engine/tensor.ts';
import type { Generation, GenerationOptions, GenerationPass } from '../../models/causal_lm.ts';
import type { KVCache } from '../../models/self_attention.ts';
import { FIXTURE_PROMPTS, gptNeoxFixture } from '../support/generation_fixture.ts';

const fx = gptNeoxFixture(test);
const prompts = FIXTURE_PROMPTS;
// Many EOS ids: rows finish at different steps.
const manyEos = Array.from({ length: 12 }, (_, i) => 10 * i + 3);
// Four letters over the ids, so that short stop strings turn up within a few tokens.
const decoder = { decode: (ids: readonly number[]) => ids.map((id) => 'abcd'[id % 4]).join('') };

/** The generation, and the batch size and pass of every step the model computed (one stepLast call a step). */
async function generation(ps: Int32Array[], opts: GenerationOptions): Promise<{ g: Generation; batchSizes: number[]; passes: GenerationPass[] }> {
  const stepLast = fx.model.stepLast;
  const batchSizes: number[] = [], passes: GenerationPass[] = [];
  fx.model.stepLast = (ids: Tensor, cache: KVCache[]) => {
    batchSizes.push(ids.shape[0]);
    passes.push({ count: ids.shape[0], tokens: ids.shape[1], filled: cache[0].length });
    return stepLast.call(fx.model, ids, cache);
  };
  try {
    return { g: await fx.model.generate(ps, opts), batchSizes, passes };
  } finally {
    fx.model.stepLast = stepLast;
  }
}

/** Passes summed by shape, in a fixed order. */
function byShape(passes: readonly GenerationPass[]): GenerationPass[] {
  const m = new Map<string, GenerationPass>();
  for (const p of passes) {
    const key = `${p.tokens} ${p.filled}`;
    const x = m.get(key);
    if (x) x.count += p.count; else m.set(key, { ...p });
  }
  return [...m.values()].sort((a, b) => a.filled - b.filled || a.tokens - b.tokens);
}

// The pipelined steps where the tokens are greedy (the same on any device), with why.
const cases: [string, Int32Array[], GenerationOptions, steps?: number][] = [
  // Two rows run to the length: nothing is looked ahead past maxNewTokens.
  ['EOS at different steps, compaction', prompts, { maxNewTokens: 16, eosTokenIds: manyEos }, 16],
  ['EOS at different steps, no compaction', prompts, { maxNewTokens: 16, eosTokenIds: manyEos, compact: false }, 16],
  ['sampled, EOS at different steps, compaction', prompts, { maxNewTokens: 16, eosTokenIds: manyEos, temperature: 1, topK: 30, seed: 5 }],
  ['sampled, EOS at different steps, no compaction', prompts, { maxNewTokens: 16, eosTokenIds: manyEos, temperature: 1, topK: 30, seed: 5, compact: false }],
  ['stop strings and EOS, with text', prompts, { maxNewTokens: 12, stopStrings: ['aa', 'dcb'], eosTokenIds: [3], decoder, temperature: 0.9, seed: 2 }],
  // The rows stop at steps 3 and 6; step 7 was computed before step 6's EOS was read.
  ['EOS before the length, compaction off', prompts.slice(0, 2), { maxNewTokens: 12, eosTokenIds: manyEos, compact: false }, 7],
  // The prompt pass only: no lookahead past maxNewTokens.
  ['maxNewTokens 1', prompts, { maxNewTokens: 1, eosTokenIds: manyEos, decoder }, 1],
  ['maxNewTokens 0', prompts, { maxNewTokens: 0 }, 0],
  ['a single row, EOS', [prompts[2]], { maxNewTokens: 16, eosTokenIds: manyEos, temperature: 1, seed: 7 }],
  ['a single row to the length', [prompts[2]], { maxNewTokens: 6 }, 6],
  // Prompts wait and join the batch of 2 as it compacts: their prompt passes run between the batch's steps.
  ['joins, EOS at different steps', prompts, { maxNewTokens: 16, eosTokenIds: manyEos, batchSize: 2 }],
  ['sampled joins, EOS at different steps', prompts, { maxNewTokens: 16, eosTokenIds: manyEos, temperature: 1, topK: 30, seed: 5, batchSize: 2 }],
];

for (const [name, ps, opts, steps] of cases) {
  test(`${name}: pipelined rows equal the unpipelined loop's; the steps computed`, async () => {
    const piped = await generation(ps, { ...opts, pipelined: true });
    const plain = await generation(ps, { ...opts, pipelined: false });
    assert.equal(piped.g.rows, plain.g.rows);
    if (steps !== undefined) assert.is(piped.g.steps, steps);
    assert.is(piped.g.steps, piped.batchSizes.length, 'steps counts every computed step');
    assert.is(plain.g.steps, plain.batchSizes.length);
    const stoppedEarly = plain.g.steps < opts.maxNewTokens;
    const compacted = plain.batchSizes.some((n) => n < ps.length);
    // Without a compaction every step is looked ahead: when all rows stop early, one discarded step more.
    if (!compacted) assert.is(piped.g.steps, plain.g.steps + (stoppedEarly ? 1 : 0), 'the discarded lookahead');
    // What the audit counts: the passes each run reports are those the model ran.
    for (const run of [piped, plain]) assert.equal(byShape(run.g.passes), byShape(run.passes), 'Generation.passes');
    if (opts.batchSize) assert.ok(piped.passes.filter((p) => p.filled === 0).length > 1 && Math.max(...piped.batchSizes) <= opts.batchSize, 'prompts joined a batch of batchSize rows at most');
  });
}

test('the cases cover what they name: early stops, stop strings, compactions one step later than unpipelined', async () => {
  const { g, batchSizes } = await generation(prompts, { ...cases[0][2], pipelined: true });
  const plain = await generation(prompts, { ...cases[0][2], pipelined: false });
  assert.ok(g.rows.some((r) => r.finish === 'eos') && g.rows.some((r) => r.tokens.length > 2), 'rows finish at different steps');
  // The unpipelined loop shrinks the batch at the step after the compaction is due; pipelined, one step later.
  const firstSmaller = (sizes: number[]) => sizes.findIndex((n) => n < prompts.length);
  assert.ok(firstSmaller(plain.batchSizes) > 0, 'a compaction happened');
  assert.is(firstSmaller(batchSizes), firstSmaller(plain.batchSizes) + 1);
  const stop = await fx.model.generate(prompts, cases[4][2]);
  assert.ok(stop.rows.some((r) => r.finish === 'stop') && stop.rows.some((r) => r.finish !== 'stop'), 'some rows hit a stop string');
  const single = await fx.model.generate([prompts[2]], cases[8][2]);
  assert.is(single.rows[0].finish, 'eos');
});

test.run();
