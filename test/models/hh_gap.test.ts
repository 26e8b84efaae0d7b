// `juice experiment hh-gap`'s evaluation and its dry run. pairMetrics (train/eval_pairs.ts) against the hand
// computation from sequenceLogprobs of each row alone (batch 1, no padding) on a tiny byte-level model: batches
// of 3 rows (a pair split across two batches, right padding) must give the same four numbers. Then, when
// ../shared/data holds HH-RLHF and hh-byte-base, a dry run of the experiment (one SFT run, 2 steps, 16 pairs), and a
// SIGTERM during its first run: passed on to that run, which checkpoints and exits 143, and the experiment stops.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad } from '../../engine/autodiff.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { loadCausalLM } from '../../models/causal_lm.ts';
import { Tokenizer } from '../../models/tokenizer.ts';
import { encodeTexts } from '../../train/data/index.ts';
import { pairEvalKeys, pairMetrics, pairMetricsOf, type EncodedPair } from '../../train/eval_pairs.ts';
import { missingInputs, selectRuns, warmupFor, type HhGapResult } from '../../train/experiments/hh_gap.ts';
import { sequenceLogprobs } from '../../train/objectives/logprobs.ts';
import { writeByteModel } from '../support/byte_model.ts';
import { SHARED_DATA } from '../support/paths.ts';
import { initGpu } from '../support/util.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

test('pairMetrics: the four numbers of each row scored alone', async () => {
  await initGpu();
  const dir = mkdtempSync(join(tmpdir(), 'juice-hh-gap-'));
  try {
    writeByteModel(dir, undefined, 7);
    const model = loadCausalLM(dir);
    const tokenizer = Tokenizer.fromFolder(dir);
    const texts: [string, string, string][] = [
      ['\n\nHuman: hi\n\nAssistant:', ' hello there', ' go away'],
      ['\n\nHuman: what is 2+2?\n\nAssistant:', ' 4', ' it is five, I think'],
      ['\n\nHuman: a longer question about nothing much\n\nAssistant:', ' a reply', ' no'],
    ];
    const enc = { maxPromptLength: 40, maxLength: 60, maxResponseLength: 12, eosTokenId: 257 };
    const pairs: EncodedPair[] = texts.map(([p, c, r], i) => ({ ...encodeTexts(tokenizer, p, c, enc), rejected: encodeTexts(tokenizer, p, r, enc), source: { file: 'test', line: i + 1 } }));
    assert.ok(pairs[1].rejected.truncated.response, 'a rejected response is cut (no EOS)');

    // By hand: each row alone, s = Σ over its response tokens, n = its response length.
    const alone = async (s: { ids: Int32Array; responseMask: Uint8Array }) => {
      const out = tidy(() => noGrad(() => {
        const ids = Tensor.fromArray(s.ids, [1, s.ids.length], 'i32');
        return sequenceLogprobs(model.tokenLogprobs(ids), Tensor.fromArray(Float32Array.from(s.responseMask), [1, s.ids.length]));
      }).keep());
      const v = (await out.toArray())[0];
      out.dispose();
      return { s: v, n: s.responseMask.reduce((a, b) => a + b, 0) };
    };
    let gapSum = 0, gapTok = 0, wins = 0, cs = 0, cn = 0;
    for (const p of pairs) {
      const c = await alone(p), r = await alone(p.rejected);
      gapSum += c.s - r.s; gapTok += c.s / c.n - r.s / r.n; wins += c.s > r.s ? 1 : 0; cs += c.s; cn += c.n;
    }
    const n = pairs.length;
    const expected = { gap_sum: gapSum / n, gap_tok: gapTok / n, acc: wins / n, chosen_nll: -cs / cn };

    const got = await pairMetrics(model, pairs, 3, 258);
    for (const k of ['gap_sum', 'gap_tok', 'chosen_nll'] as const) {
      assert.ok(Math.abs(got[k] - expected[k]) <= 1e-4 * Math.max(1, Math.abs(expected[k])), `${k}: ${got[k]} vs ${expected[k]}`);
    }
    assert.is(got.acc, expected.acc);
    assert.equal(pairMetricsOf({ type: 'eval', step: 3, ...pairEvalKeys(got) }), got, 'an eval line reads back');
    assert.is(pairMetricsOf({ type: 'eval', step: 3, eval_loss: 1 }), null);
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hh-gap: run selection and the scaled warmup', () => {
  assert.equal(selectRuns('sft').map((r) => r.id), ['sft-lr3e-4', 'sft-lr3e-5']);
  assert.equal(selectRuns('irft-t4-greedy,rft').map((r) => r.id), ['irft-t4-greedy', 'rft']);
  assert.throws(() => selectRuns('dpo'), /unknown dpo/);
  assert.is(warmupFor(252), 10);
  assert.is(warmupFor(8), 0);
});

test('juice experiment hh-gap: a dry run (2 SFT steps on 16 pairs)', () => {
  if (missingInputs(SHARED_DATA).length > 0) { console.log(`  skipped: no HH-RLHF / hh-byte-base under ${SHARED_DATA}`); return; }
  const out = mkdtempSync(join(tmpdir(), 'juice-hh-gap-run-'));
  try {
    const r = spawnSync(join(ROOT, 'bin/juice'), ['experiment', 'hh-gap', '--data-dir', SHARED_DATA, '--out', out, '--methods', 'sft-lr3e-4', '--seeds', '1',
      '--max-steps', '2', '--limit', '16', '--eval-limit', '8', '--samples', '1'], { encoding: 'utf8', timeout: 900_000 });
    assert.is(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as HhGapResult[];
    assert.is(results.length, 1);
    const [x] = results;
    assert.is(x.method, 'sft');
    assert.is(x.max_steps, 2);
    assert.equal(x.evals.map((e) => e.step), [1, 2]);
    for (const m of [x.before, x.after!, ...x.evals]) for (const k of ['gap_sum', 'gap_tok', 'acc', 'chosen_nll'] as const) assert.ok(Number.isFinite(m[k]), `${k} finite`);
    assert.ok(x.after!.chosen_nll !== x.before.chosen_nll, 'training moved the model');
    assert.match(r.stdout, /gap_sum/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('juice experiment hh-gap: SIGTERM reaches the run under way, which checkpoints and exits 143; no later run starts, no process is left', async () => {
  if (missingInputs(SHARED_DATA).length > 0) { console.log(`  skipped: no HH-RLHF / hh-byte-base under ${SHARED_DATA}`); return; }
  const out = mkdtempSync(join(tmpdir(), 'juice-hh-gap-term-'));
  try {
    const child = spawn(join(ROOT, 'bin/juice'), ['experiment', 'hh-gap', '--data-dir', SHARED_DATA, '--out', out, '--methods', 'sft-lr3e-4,sft-lr3e-5', '--seeds', '1',
      '--max-steps', '4', '--limit', '16', '--eval-limit', '8', '--samples', '1'], { env: { ...process.env, JUICE_TEST_STALL_IN_STEP: '3' }, stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const runLog = join(out, 'sft-lr3e-4-seed1', 'log.txt');
    for (let i = 0; i < 6000 && !(existsSync(runLog) && readFileSync(runLog, 'utf8').includes('stalling in step 3')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(runLog) && readFileSync(runLog, 'utf8').includes('stalling in step 3'), 'the first run reached step 3');
    child.kill('SIGTERM');
    assert.is(await exited, 143);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as HhGapResult[];
    assert.equal(results.map((x) => [x.run, x.exit_code]), [['sft-lr3e-4', 143]]);
    assert.ok(existsSync(join(out, 'sft-lr3e-4-seed1', 'checkpoint-3')), 'the stopped run wrote its checkpoint');
    assert.ok(!existsSync(join(out, 'sft-lr3e-5-seed1')), 'the next run did not start');
    assert.is(spawnSync('pgrep', ['-f', out]).status, 1, 'a process of the experiment is still running');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test.run();
