// Generation: the sampler against exact distributions (no GPU); left-padded batches of different lengths against
// each row alone (prompts joining a batch too) and against full recomputation, on the gpt_neox and mistral fixtures;
// the fused rotary and cache write against the training path's ops; EOS, stop strings, seeds; `juice generate` on
// the gpt_neox fixture with the tiny test tokenizer.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { rng } from '../../engine/random.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { Tensor, tidy, tidyAsync } from '../../engine/tensor.ts';
import { loadCausalLM, type CausalLM } from '../../models/causal_lm.ts';
import type { KVCache } from '../../models/self_attention.ts';
import { generate } from '../../bin/commands/generate.ts';
import { argmax, checkSamplingOptions, sampleToken, samplingDistribution, SamplingError } from '../../models/sampling.ts';
import { Tokenizer } from '../../models/tokenizer.ts';
import { assertClose, download, initGpu, randInt, randn } from '../support/util.ts';

const HF = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
const TINY_TOKENIZER = fileURLToPath(new URL('../fixtures/tokenizer/', import.meta.url));
const FORWARD_TOL = 1e-5;

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-generate-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// The sampler, no GPU.

/** probs renormalised over `kept` (zero elsewhere). */
function restricted(probs: number[], kept: number[]): number[] {
  const total = kept.reduce((s, i) => s + probs[i], 0);
  return probs.map((p, i) => (kept.includes(i) ? p / total : 0));
}

const softmax = (logits: number[]) => {
  const e = logits.map((l) => Math.exp(l - Math.max(...logits)));
  return e.map((v) => v / e.reduce((a, b) => a + b, 0));
};

test('greedy: the first argmax on ties; temperature 0 draws nothing from the generator', () => {
  assert.is(argmax([0.5, 2, -1, 2]), 1);
  const random = rng(3), untouched = rng(3);
  assert.is(sampleToken([0.5, 2, -1, 2], {}, random), 1);
  assert.is(random.next(), untouched.next());
});

test('samplingDistribution: temperature, top-k (ties with the k-th kept), top-p, and their order', () => {
  const logits = [1, 2, 3, 0.5];
  assertClose(samplingDistribution(logits, { temperature: 1 }), softmax(logits), 1e-14, 'temperature 1');
  assertClose(samplingDistribution(logits, { temperature: 2 }), softmax(logits.map((l) => l / 2)), 1e-14, 'temperature 2');
  assertClose(samplingDistribution(logits, { temperature: 1, topK: 2 }), restricted(softmax(logits), [1, 2]), 1e-14, 'top-k 2');
  assertClose(samplingDistribution(logits, { temperature: 1, topK: 4 }), softmax(logits), 1e-14, 'top-k = V');
  assertClose(samplingDistribution([3, 1, 3, 3, 0], { temperature: 1, topK: 2 }), [1 / 3, 0, 1 / 3, 1 / 3, 0], 1e-14, 'top-k 2 with a three-way tie');
  // probs 0.5, 0.25, 0.15, 0.1 (most probable first): top-p keeps a token while the mass before it is below p.
  const probs = [0.15, 0.5, 0.1, 0.25];
  const logp = probs.map(Math.log);
  const cases: [number, number[]][] = [[0.01, [1]], [0.4, [1]], [0.6, [1, 3]], [0.8, [1, 3, 0]], [0.95, [0, 1, 2, 3]], [1, [0, 1, 2, 3]]];
  for (const [p, kept] of cases) assertClose(samplingDistribution(logp, { temperature: 1, topP: p }), restricted(probs, kept), 1e-12, `top-p ${p}`);
  // At the boundary (exact in binary): 0.25 + 0.25 reaches p = 0.5, so the third token goes; ties in index order.
  assert.equal([...samplingDistribution([0, 0, 0, 0], { temperature: 1, topP: 0.5 })], [0.5, 0.5, 0, 0]);
  // Top-p sees the top-k survivors renormalised: 0.35, 0.3 -> 0.54, 0.46, so p = 0.5 keeps one token (two without top-k).
  const ordered = [0.35, 0.3, 0.2, 0.15].map(Math.log);
  assertClose(samplingDistribution(ordered, { temperature: 1, topP: 0.5 }), restricted([0.35, 0.3, 0.2, 0.15], [0, 1]), 1e-12, 'top-p alone');
  assertClose(samplingDistribution(ordered, { temperature: 1, topK: 2, topP: 0.5 }), [1, 0, 0, 0], 1e-12, 'top-k then top-p');
  // Temperature comes first: at 2 the probabilities flatten to ∝ sqrt(p), and top-p 0.5 then keeps two.
  const flat = [0.35, 0.3, 0.2, 0.15].map(Math.sqrt);
  assertClose(samplingDistribution(ordered, { temperature: 2, topP: 0.5 }), restricted(flat, [0, 1]), 1e-12, 'temperature then top-p');
});

test('temperature -> 0 is greedy', () => {
  const random = rng(11);
  for (let row = 0; row < 50; row++) {
    const logits = Array.from(randn(128, 100 + row));
    const probs = samplingDistribution(logits, { temperature: 1e-6 });
    assert.is(probs[argmax(logits)], 1);
    assert.is(sampleToken(logits, { temperature: 1e-6 }, random), argmax(logits));
  }
});

test('draws: top-k 2 never picks a third token; frequencies of 20000 draws within 4.5 sigma of the distribution', () => {
  const logits = [1.2, -0.3, 0.4, 2.0, 0.0];
  const random = rng(5);
  for (let i = 0; i < 1000; i++) assert.ok([0, 3].includes(sampleToken(logits, { temperature: 1, topK: 2 }, random)));
  for (const opts of [{ temperature: 1 }, { temperature: 0.7, topK: 3 }, { temperature: 1.5, topP: 0.8 }]) {
    const probs = samplingDistribution(logits, opts);
    const N = 20000, counts = new Array(logits.length).fill(0);
    for (let i = 0; i < N; i++) counts[sampleToken(logits, opts, random)]++;
    probs.forEach((p, i) => {
      const sigma = Math.sqrt((N * p * (1 - p)) || 1e-300);
      assert.ok(Math.abs(counts[i] - N * p) <= 4.5 * sigma, `${JSON.stringify(opts)} token ${i}: ${counts[i]} draws, expected ${N * p} ± ${sigma}`);
    });
  }
});

test('the same seed gives the same draws, another seed others', () => {
  const logits = Array.from(randn(64, 7));
  const draws = (seed: number) => { const r = rng(seed); return Array.from({ length: 40 }, () => sampleToken(logits, { temperature: 1, topP: 0.9 }, r)); };
  assert.equal(draws(1), draws(1));
  assert.not.equal(draws(1), draws(2));
});

test('sampling options out of range are a SamplingError naming the option', () => {
  const fails = (opts: object, needle: RegExp) => assert.throws(() => checkSamplingOptions(opts), (e: Error) => e instanceof SamplingError && needle.test(e.message));
  fails({ temperature: -1 }, /temperature/);
  fails({ temperature: Infinity }, /temperature/);
  fails({ temperature: 1, topK: 1.5 }, /topK/);
  fails({ temperature: 1, topP: 0 }, /topP/);
  fails({ temperature: 1, topP: 1.2 }, /topP/);
  fails({ topK: 5 }, /temperature > 0/);
  assert.throws(() => samplingDistribution([1, 2], {}), /greedy/);
});

// ---------------------------------------------------------------------------------------------
// Left-padded batches on the GPU.

/** The fixture's greedy prompt [P] and its greedy continuation as transformers produced it. */
function fixtureGreedy(name: string): { prompt: Int32Array; tokens: Int32Array } {
  const f = SafetensorsFile.open(path.join(HF, name, 'expected.safetensors'));
  const result = { prompt: f.read('greedy_prompt') as Int32Array, tokens: f.read('greedy_tokens') as Int32Array };
  f.close();
  return result;
}

/** Logits [T, V] of ids by full recomputation of the row alone, no cache. */
async function fullLogits(model: CausalLM, ids: ArrayLike<number>): Promise<Float64Array> {
  return tidyAsync(() => download(noGrad(() => model.forward(Tensor.fromArray(Array.from(ids), [1, ids.length], 'i32')))));
}

for (const name of ['gpt_neox', 'mistral']) {
  test(`${name}: each row of a left-padded batch generates greedily what it generates alone; the fixture row transformers' tokens`, async () => {
    await initGpu();
    const model = loadCausalLM(path.join(HF, name));
    const fixture = fixtureGreedy(name);
    // Lengths 6, 3 and 9; 9 + 10 tokens cross Mistral's window of 8.
    const prompts = [fixture.prompt, randInt(3, 128, 1), randInt(9, 128, 2)];
    const batch = await model.generate(prompts, { maxNewTokens: 10 });
    assert.is(batch.steps, 10);
    for (const [b, prompt] of prompts.entries()) {
      const alone = await model.generate([prompt], { maxNewTokens: 10 });
      assert.equal(batch.rows[b].tokens, alone.rows[0].tokens, `${name} row ${b} (prompt length ${prompt.length})`);
      assert.is(batch.rows[b].finish, 'length');
    }
    assert.equal(batch.rows[0].tokens, Array.from(fixture.tokens.subarray(fixture.prompt.length)));
    model.dispose();
  });

  test(`${name}: prompts joining a batch of 2 as it compacts generate what they generate alone (greedy and sampled, past Mistral's window)`, async () => {
    await initGpu();
    const model = loadCausalLM(path.join(HF, name));
    const prompts = [randInt(9, 128, 11), randInt(6, 128, 12), randInt(4, 128, 13), randInt(2, 128, 14), randInt(1, 128, 15)];
    // Many EOS ids: rows finish at different steps, so that joiners meet running rows; 9 + 12 positions cross a window of 8.
    const eosTokenIds = Array.from({ length: 16 }, (_, i) => 8 * i + 5);
    for (const sampling of [{}, { temperature: 1, topK: 40, seed: 3 }]) {
      const opts = { ...sampling, maxNewTokens: 12, eosTokenIds };
      const joined = await model.generate(prompts, { ...opts, batchSize: 2 });
      assert.ok(joined.passes.filter((p) => p.filled === 0).length > 2, 'prompts joined');
      for (const [b, prompt] of prompts.entries()) {
        const alone = await model.generate([prompt], { ...opts, rowIds: [b] });
        assert.equal(joined.rows[b], alone.rows[0], `${name} ${JSON.stringify(sampling)} prompt ${b}`);
      }
    }
    model.dispose();
  });

  test(`${name}: KV-cache steps of a left-padded batch equal each row's full recomputation alone`, async () => {
    await initGpu();
    const model = loadCausalLM(path.join(HF, name));
    const V = model.config.vocabSize;
    // Rows of 4, 7 and 2 prompt tokens, padded to 7, then one token, one token and chunks of three.
    const lengths = [4, 7, 2], longest = 7, chunks = [1, 1, 3, 3];
    const total = longest + chunks.reduce((a, b) => a + b, 0); // 15 > Mistral's window of 8
    const rows = lengths.map((n, b) => randInt(n + total - longest, V, 40 + b));
    const full = await Promise.all(rows.map((ids) => fullLogits(model, ids)));
    const cache = model.createCache(3, total, lengths.map((n) => longest - n));
    // Rotary positions count from each row's first real token: the cache holds the keys of each row alone.
    const cachedKeys = async (c: KVCache[], b: number, from: number, n: number) => {
      const [, KVH, S, D] = c[0].k.shape;
      const k = await download(c[0].k);
      return Float64Array.from({ length: KVH * n * D }, (_, i) => k[((b * KVH + Math.floor(i / (n * D))) * S + from) * D + (i % (n * D))]);
    };
    let start = 0;
    for (const width of [longest, ...chunks]) {
      // Column c of the batch is token c - padding of row b.
      const ids = rows.flatMap((r, b) => Array.from({ length: width }, (_, t) => r[start + t - (longest - lengths[b])] ?? 0));
      const logits = await tidyAsync(() => download(model.step(Tensor.fromArray(ids, [3, width], 'i32'), cache)));
      for (const [b, n] of lengths.entries()) {
        const first = Math.max(start - (longest - n), 0), end = start + width - (longest - n); // the row's real tokens in this step
        const ours = logits.subarray((b * width + width - (end - first)) * V, (b + 1) * width * V);
        assertClose(ours, full[b].subarray(first * V, end * V), FORWARD_TOL, `${name} row ${b}: tokens ${first}..${end - 1}`);
      }
      if (start === 0) {
        for (const [b, n] of lengths.entries()) {
          const alone = model.createCache(1, n);
          tidy(() => model.step(Tensor.fromArray(rows[b].subarray(0, n), [1, n], 'i32'), alone));
          assertClose(await cachedKeys(cache, b, longest - n, n), await cachedKeys(alone, 0, 0, n), 1e-6, `${name} row ${b}: cached keys`);
          for (const layer of alone) layer.dispose();
        }
      }
      start += width;
    }
    for (const layer of cache) layer.dispose();
    model.dispose();
  });
}

const fusedDispatches = () => ledger.byOp().find((r) => r.key === 'qkvRotary')?.dispatches ?? 0;

for (const name of ['gpt_neox', 'mistral']) {
  test(`${name}: the fused rotary and cache write give the training path's logits and cache bit for bit, and its tokens`, async () => {
    await initGpu();
    const model = loadCausalLM(path.join(HF, name));
    const V = model.config.vocabSize;
    // Rows of 5, 2 and 9 prompt tokens, padded to 9, then single tokens and a chunk of three: 15 > Mistral's window of 8.
    const lengths = [5, 2, 9], longest = 9, widths = [longest, 1, 1, 3, 1];
    const total = widths.reduce((a, b) => a + b, 0);
    const ids = randInt(3 * total, V, 130); // [3, total]; the padding columns' ids are never seen
    const caches = [true, false].map((fused) => model.createCache(3, total, lengths.map((n) => longest - n), fused));
    let start = 0;
    for (const width of widths) {
      const input = Array.from({ length: 3 * width }, (_, i) => ids[Math.floor(i / width) * total + start + (i % width)]);
      const logits: Float64Array[] = [];
      for (const cache of caches) {
        const before = fusedDispatches();
        logits.push(await tidyAsync(() => download(model.step(Tensor.fromArray(input, [3, width], 'i32'), cache))));
        assert.is(fusedDispatches() - before, cache[0].fusedRotary ? model.config.layers : 0, `${name}: qkvRotary once a layer, on the fused path only`);
      }
      assert.equal(logits[0], logits[1], `${name}: logits of columns ${start}..${start + width - 1}`);
      start += width;
    }
    for (const [l, fused] of caches[0].entries()) {
      assert.equal(await download(fused.k), await download(caches[1][l].k), `${name} layer ${l}: cached k`);
      assert.equal(await download(fused.v), await download(caches[1][l].v), `${name} layer ${l}: cached v`);
    }
    for (const cache of caches) for (const layer of cache) layer.dispose();
    const prompts = lengths.map((n, b) => randInt(n, V, 140 + b));
    for (const sampling of [{}, { temperature: 0.9, topK: 20, topP: 0.9, seed: 5 }]) {
      const runs: number[][][] = [];
      for (const fusedRotary of [true, false]) runs.push((await model.generate(prompts, { maxNewTokens: 8, ...sampling, fusedRotary })).rows.map((r) => r.tokens));
      assert.equal(runs[0], runs[1], `${name}: tokens ${JSON.stringify(sampling)}`);
    }
    model.dispose();
  });
}

test('EOS ends a row (others go on); the batch stops when every row has; maxNewTokens 0', async () => {
  await initGpu();
  const model = loadCausalLM(path.join(HF, 'gpt_neox'));
  const fixture = fixtureGreedy('gpt_neox'); // greedy: 51, 100, 40, 95, 100, 40, 95, ...
  const short = Int32Array.from([5, 9, 14]); // greedy: 114, 52, 7, 2, 116, ...
  const one = await model.generate([fixture.prompt, short], { maxNewTokens: 8, eosTokenIds: [40] });
  assert.equal(one.rows.map((r) => [r.tokens, r.finish]), [[[51, 100, 40], 'eos'], [[114, 52, 7, 2, 116, 22, 37, 15], 'length']]);
  assert.is(one.steps, 8);
  assert.is(one.timing.decodeTokens, 2 + 7);
  const both = await model.generate([fixture.prompt, short], { maxNewTokens: 8, eosTokenIds: [40, 7], pipelined: true });
  assert.equal(both.rows.map((r) => [r.tokens, r.finish]), [[[51, 100, 40], 'eos'], [[114, 52, 7], 'eos']]);
  assert.is(both.steps, 4); // both rows stopped at step 3; the lookahead step 4 was already computed
  assert.is((await model.generate([fixture.prompt, short], { maxNewTokens: 8, eosTokenIds: [40, 7], pipelined: false })).steps, 3);
  const none = await model.generate([short], { maxNewTokens: 0 });
  assert.equal([none.rows[0].tokens, none.steps], [[], 0]);
  model.dispose();
});

test('stop strings: a row stops once its text holds one; the text is cut before it; EOS is not in the text', async () => {
  await initGpu();
  const model = loadCausalLM(path.join(HF, 'gpt_neox'));
  const fixture = fixtureGreedy('gpt_neox'); // greedy: 51, 100, 40, 95, 100, 40, 95, ...
  // One letter per token: 51 z, 100 w, 40 o, 95 r.
  const decoder = { decode: (ids: readonly number[]) => ids.map((id) => String.fromCharCode(97 + (id % 26))).join('') };
  const stopped = await model.generate([fixture.prompt], { maxNewTokens: 10, stopStrings: ['rwo', 'orw'], decoder });
  assert.equal([stopped.rows[0].tokens, stopped.rows[0].text, stopped.rows[0].finish], [[51, 100, 40, 95, 100], 'zw', 'stop']);
  const eos = await model.generate([fixture.prompt], { maxNewTokens: 10, eosTokenIds: [95], decoder });
  assert.equal([eos.rows[0].tokens, eos.rows[0].text], [[51, 100, 40, 95], 'zwo']);
  await model.generate([fixture.prompt], { maxNewTokens: 2, stopStrings: ['x'] }).then(
    () => assert.unreachable('stop strings without a decoder'),
    (e: Error) => assert.ok(e instanceof SamplingError && /decoder/.test(e.message), e.message));
  model.dispose();
});

test('sampled generation: the same seed gives the same tokens, another seed others', async () => {
  await initGpu();
  const model = loadCausalLM(path.join(HF, 'mistral'));
  const prompts = [randInt(5, 128, 60), randInt(2, 128, 61)];
  const sample = async (seed: number) => (await model.generate(prompts, { maxNewTokens: 12, temperature: 1, topK: 40, topP: 0.95, seed })).rows.map((r) => r.tokens);
  const first = await sample(9);
  assert.equal(await sample(9), first);
  assert.not.equal(await sample(10), first);
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// juice generate.

/** The gpt_neox fixture's config and weights with the tiny test tokenizer (23 tokens of the model's 128). */
function modelFolder(): string {
  const dir = path.join(tmpDir, 'model');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(HF, 'gpt_neox', f), path.join(dir, f));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TINY_TOKENIZER, f), path.join(dir, f));
  return dir;
}

/** What `juice generate` prints, and its exit code. */
async function run(args: string[]): Promise<{ code: number; out: string[] }> {
  const log = console.log, error = console.error;
  const out: string[] = [];
  console.log = (s: string) => out.push(s);
  console.error = (s: string) => out.push(s);
  try {
    return { code: await generate.main(args), out };
  } finally {
    console.log = log; console.error = error;
  }
}

test('juice generate: greedy text equals the argmax of full recomputation; stop strings; seeds; rates', async () => {
  await initGpu();
  const dir = modelFolder();
  const tokenizer = Tokenizer.fromFolder(dir);
  const prompt = tokenizer.encode('hello world');
  assert.equal(prompt, [1, 17, 22]);
  // Greedy by full recomputation, no cache: the oracle of the continuation.
  const model = loadCausalLM(dir);
  const ids = [...prompt];
  for (let t = 0; t < 12; t++) {
    const logits = await fullLogits(model, ids);
    ids.push(argmax(logits.subarray((ids.length - 1) * 128)));
  }
  model.dispose();
  const expected = tokenizer.decode(ids.slice(prompt.length), { skipSpecialTokens: true });
  assert.ok(expected.length > 0, 'the continuation decodes to some text with the tiny tokenizer');

  const greedy = await run(['--model', dir, '--prompt', 'hello world', '--max-new-tokens', '12']);
  assert.is(greedy.code, 0);
  assert.is(greedy.out[0], expected);
  assert.match(greedy.out[1], /^\nprompt: 3 tokens in [\d.]+ s, [\d.]+ tokens\/s$/);
  assert.match(greedy.out[2], /^generation: 11 tokens in [\d.]+ s, [\d.]+ tokens\/s .*stopped by length; the host recorded a step in [\d.]+ ms$/);

  const stop = expected.slice(3, 6);
  const stopped = await run(['--model', dir, '--prompt', 'hello world', '--max-new-tokens', '12', '--stop', 'nowhere', '--stop', stop]);
  assert.is(stopped.out[0], expected.slice(0, expected.indexOf(stop)));
  assert.match(stopped.out[2], /stopped by stop; the host recorded a step in [\d.]+ ms$/);

  const sampled = ['--model', dir, '--prompt', 'hello world', '--max-new-tokens', '12', '--temperature', '1', '--top-p', '0.9', '--seed', '4'];
  assert.equal((await run(sampled)).out[0], (await run(sampled)).out[0]);
});

test('juice generate: usage errors return 2', async () => {
  const dir = modelFolder();
  for (const args of [[], ['--model', dir], ['--model', dir, '--prompt', 'x', '--top-k', 'many'], ['--model', dir, '--prompt', 'x', '--top-k', '5'],
    ['--model', dir, '--prompt', 'x', '--max-new-tokens', '1.5'], ['--model', dir, '--prompt', 'x', '--bogus']]) {
    const { code, out } = await run(args);
    assert.is(code, 2, `${args.join(' ')}: ${out.join('\n')}`);
  }
});

test.run();
