// No GPU: train/audit.ts generationGroups replays models/causal_lm.ts's schedules by hand-counted cases: pipelined
// (the lookahead step, the step discarded after the last row stops, a compaction one step later, batches longest
// first) and unpipelined. test/models/generate_pipelined.test.ts checks both replays against the batch each step
// really ran on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GeneratedRow } from '../../models/causal_lm.ts';
import { generationGroups } from '../../train/audit.ts';

/** A row that stopped (EOS) after `tokens` tokens, or ran to the length (Infinity). */
const row = (tokens: number, maxNewTokens: number): GeneratedRow => (tokens === Infinity
  ? { tokens: Array(maxNewTokens).fill(1), finish: 'length' }
  : { tokens: Array(tokens).fill(1), finish: 'eos' });
const rows = (stops: number[], maxNewTokens: number) => stops.map((n) => row(n, maxNewTokens));

test('every row stops at step 2: the batch computed the lookahead step 3', () => {
  assert.equal(generationGroups([5, 5, 5, 5], rows([2, 2, 2, 2], 6), 4, 6, true), [{ count: 4, promptLength: 5, newTokens: 3 }]);
});

test('rows run to the length: no lookahead past maxNewTokens (6, 1 and 0 steps)', () => {
  for (const max of [6, 1, 0]) assert.equal(generationGroups([5, 5], rows([Infinity, Infinity], max), 2, max, true), [{ count: 2, promptLength: 5, newTokens: max }]);
});

test('a compaction due after step 2 comes after the lookahead step 3: the finished rows stepped 3 steps', () => {
  // Stops at 1 and 2 of 4 rows: half the batch runs after step 2; step 3 ran on all 4 before that was read.
  assert.equal(generationGroups([5, 5, 5, 5], rows([1, 2, Infinity, Infinity], 6), 4, 6, true), [
    { count: 2, promptLength: 5, newTokens: 3 }, { count: 2, promptLength: 5, newTokens: 6 },
  ]);
  // A row stopping on the step read before the compaction leaves with it; the survivor is looked ahead again.
  assert.equal(generationGroups([5, 5, 5, 5], rows([1, 2, 3, 5], 8), 4, 8, true), [
    { count: 3, promptLength: 5, newTokens: 3 }, { count: 1, promptLength: 5, newTokens: 6 },
  ]);
});

test('batches of batchSize, longest prompts first, each at its longest prompt length', () => {
  // Prompts 1 and 2 (lengths 9, 7) step together at 9, prompt 2 leaving after the lookahead step 3; prompts 0 and 3
  // (4, 3) at 4, both stopping at 1, so 2 steps.
  assert.equal(generationGroups([4, 9, 7, 3], rows([1, Infinity, 2, 1], 5), 2, 5, true), [
    { count: 1, promptLength: 9, newTokens: 5 }, { count: 1, promptLength: 9, newTokens: 3 }, { count: 2, promptLength: 4, newTokens: 2 },
  ]);
});

test('unpipelined: each step waits for the last, so nothing is discarded and a compaction comes when due', () => {
  assert.equal(generationGroups([5, 5, 5, 5], rows([2, 2, 2, 2], 6), 4, 6, false), [{ count: 4, promptLength: 5, newTokens: 2 }]);
  assert.equal(generationGroups([5, 5, 5, 5], rows([1, 2, Infinity, Infinity], 6), 4, 6, false), [
    { count: 2, promptLength: 5, newTokens: 2 }, { count: 2, promptLength: 5, newTokens: 6 },
  ]);
});

test.run();
