// Batching: the PRNG, per-epoch shuffles, length grouping, right padding, and resuming from a saved
// cursor. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BatchSampler, DataLoader, Rng, collate, type Batch, type Cursor, type EncodedSequence } from '../../train/data/index.ts';

test('xoshiro128**: the reference recurrence from state [1, 2, 3, 4]; seeding and state round trip', () => {
  // By hand: rotl(2 * 5, 7) * 9 = 11520; then s[1] = 0; then s = [12295, 1029, ...]: rotl(1029 * 5, 7) * 9 = 5927040.
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.equal([r.nextU32(), r.nextU32(), r.nextU32()], [11520, 0, 5927040]);
  const a = Rng.fromSeed(42);
  const b = Rng.fromSeed(42);
  const xs = Array.from({ length: 5 }, () => a.nextU32());
  assert.equal(Array.from({ length: 5 }, () => b.nextU32()), xs);
  assert.not.equal(Array.from({ length: 5 }, () => Rng.fromSeed(43).nextU32()), xs);
  const saved = JSON.parse(JSON.stringify(a.state()));
  const next = [a.nextU32(), a.below(10)];
  const c = Rng.fromState(saved);
  assert.equal([c.nextU32(), c.below(10)], next);
  const counts = new Array(6).fill(0);
  const d = Rng.fromSeed(1);
  for (let i = 0; i < 6000; i++) counts[d.below(6)]++;
  for (const n of counts) assert.ok(n > 850 && n < 1150, `below(6) counts ${counts}`);
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), /not all zero/);
  assert.throws(() => Rng.fromSeed(1.5), /safe integer/);
});

test('each epoch is a permutation; epochs differ; the same seed repeats; dropLast; no shuffle keeps the order', () => {
  const s = new BatchSampler(10, { batchSize: 3, seed: 7 });
  assert.is(s.batchesPerEpoch, 4);
  const epoch = () => Array.from({ length: 4 }, () => s.next());
  const e0 = epoch();
  const e1 = epoch();
  assert.equal(e0.map((b) => b.indices.length), [3, 3, 3, 1]);
  assert.equal(e0.map((b) => [b.epoch, b.position]), [[0, 0], [0, 1], [0, 2], [0, 3]]);
  assert.equal(e1[0].epoch, 1);
  for (const e of [e0, e1]) assert.equal(e.flatMap((b) => Array.from(b.indices)).sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.not.equal(e0.map((b) => Array.from(b.indices)), e1.map((b) => Array.from(b.indices)));
  const again = new BatchSampler(10, { batchSize: 3, seed: 7 });
  assert.equal(Array.from({ length: 4 }, () => Array.from(again.next().indices)), e0.map((b) => Array.from(b.indices)));
  const drop = new BatchSampler(10, { batchSize: 3, seed: 7, dropLast: true });
  assert.equal([drop.batchesPerEpoch, drop.next().indices.length], [3, 3]);
  const ordered = new BatchSampler(5, { batchSize: 2, shuffle: false });
  assert.equal(Array.from({ length: 4 }, () => Array.from(ordered.next().indices)), [[0, 1], [2, 3], [4], [0, 1]]);
});

test('length grouping: batches are sorted runs of their mega-batch, longest first, in shuffled order', () => {
  const lengths = Array.from({ length: 40 }, (_, i) => (i * 17) % 40 + 1); // a permutation of 1..40
  const s = new BatchSampler(40, { batchSize: 4, seed: 3, groupByLength: true, megaBatchFactor: 10, lengths });
  const batches = Array.from({ length: 10 }, () => Array.from(s.next().indices, (i) => lengths[i]));
  for (const b of batches) assert.equal(b, [...b].sort((x, y) => y - x));
  // One mega-batch holds the whole epoch: the batches are 40..37, 36..33, ..., in some order.
  assert.equal(batches.map((b) => b[0]).sort((x, y) => y - x), [40, 36, 32, 28, 24, 20, 16, 12, 8, 4]);
  assert.not.equal(batches.map((b) => b[0]), [40, 36, 32, 28, 24, 20, 16, 12, 8, 4]);
  // Mega-batches of 8: each batch's lengths are consecutive in its mega-batch's sorted order.
  const small = new BatchSampler(40, { batchSize: 4, seed: 3, groupByLength: true, megaBatchFactor: 2, lengths });
  const seen = Array.from({ length: 10 }, () => Array.from(small.next().indices));
  assert.equal(seen.flat().sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i));
  assert.throws(() => new BatchSampler(4, { batchSize: 2, groupByLength: true }), /groupByLength needs lengths/);
});

const seq = (ids: number[], promptLength: number): EncodedSequence => ({
  ids: Int32Array.from(ids),
  responseMask: Uint8Array.from(ids.map((_, i) => (i >= promptLength ? 1 : 0))),
  promptLength,
  responseLength: ids.length - promptLength,
  truncated: { prompt: false, response: false },
});

test('collate pads on the right to the longest row, rounded up to a multiple', () => {
  const rows = [seq([5, 6, 7], 1), seq([8, 9, 10, 11, 12], 2)];
  const b = collate(rows, 0);
  assert.equal([b.B, b.T, Array.from(b.lengths)], [2, 5, [3, 5]]);
  assert.equal(Array.from(b.ids), [5, 6, 7, 0, 0, 8, 9, 10, 11, 12]);
  assert.equal(Array.from(b.responseMask), [0, 1, 1, 0, 0, 0, 0, 1, 1, 1]);
  const r = collate(rows, 99, 4);
  assert.equal([r.T, Array.from(r.ids.subarray(0, 8))], [8, [5, 6, 7, 99, 99, 99, 99, 99]]);
});

const dataset = Array.from({ length: 20 }, (_, i) => seq(Array.from({ length: 2 + ((i * 7) % 11) }, (_, t) => 100 * i + t), 1));
const view = (b: Batch) => ({ indices: Array.from(b.indices), ids: Array.from(b.ids), mask: Array.from(b.responseMask), T: b.T, epoch: b.epoch, position: b.position });

for (const grouped of [false, true]) {
  test(`a restored cursor gives exactly the batches of continuing${grouped ? ' (length grouping)' : ''}`, () => {
    const options = { batchSize: 3, seed: 11, padId: -1, groupByLength: grouped, megaBatchFactor: 2 };
    const loader = new DataLoader(dataset, options); // 7 batches per epoch
    for (let i = 0; i < 7; i++) loader.next();
    const saved: Cursor = JSON.parse(JSON.stringify(loader.cursor()));
    assert.equal([saved.epoch, saved.position], [0, 7]);
    const resumed = new DataLoader(dataset, options);
    resumed.restore(saved);
    const continuing = Array.from({ length: 12 }, () => view(loader.next()));
    assert.equal(Array.from({ length: 12 }, () => view(resumed.next())), continuing);
    assert.equal([continuing[0].epoch, continuing[0].position, continuing[7].epoch], [1, 0, 2]);
    // Mid-epoch too.
    const mid: Cursor = JSON.parse(JSON.stringify(loader.cursor()));
    assert.equal([mid.epoch, mid.position], [2, 5]);
    const third = new DataLoader(dataset, options);
    third.restore(mid);
    assert.equal(Array.from({ length: 5 }, () => view(third.next())), Array.from({ length: 5 }, () => view(loader.next())));
  });
}

test('restoring a cursor of another dataset or batch size is an error', () => {
  const loader = new DataLoader(dataset, { batchSize: 3, padId: 0 });
  const c = loader.cursor();
  assert.throws(() => new DataLoader(dataset.slice(1), { batchSize: 3, padId: 0 }).restore(c), /the cursor is for 20 examples in batches of 3, this sampler has 19 in batches of 3/);
  assert.throws(() => loader.restore({ ...c, position: 8 }), /position 8 is outside \[0, 7\]/);
});

test.run();
