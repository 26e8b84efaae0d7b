import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeExample } from '../../train/data/encode.ts';
import {
  BOS_ID, EOS_ID, PAD_ID, UNK_ID, VOCAB, VOCAB_SIZE, MAX_PROMPT_TOKENS, MAX_RESPONSE_TOKENS, decode, decodeResponse, encode,
  encodeTaskExample, exactMatch, expertDistribution, expertLogProb, OPS, referenceNumbers, score, splitOf, taskExamples, taskSplits,
  taskTokenizer, toExample, weakerDistribution, weakerLogProb,
} from '../../train/tasks/expert_task.ts';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);
const sum = (d: Map<string, number>) => [...d.values()].reduce((s, p) => s + p, 0);

test('vocabulary: pad 0, bos 1, eos 2, unk 3, then digits, operations and "="; a few dozen tokens at most', () => {
  assert.equal([PAD_ID, BOS_ID, EOS_ID, UNK_ID], [0, 1, 2, 3]);
  assert.equal(VOCAB.slice(0, 4), ['<pad>', '<bos>', '<eos>', '<unk>']);
  assert.is(VOCAB_SIZE, 19);
  assert.equal(encode('0123456789SRIP='), Array.from({ length: 15 }, (_, i) => i + 4));
});

test('encode/decode round trip; unknown characters to <unk>; specials skipped on request', () => {
  const text = 'S3130592=0123599';
  assert.is(decode(encode(text)), text);
  assert.equal(encode('S1x'), [VOCAB.indexOf('S'), VOCAB.indexOf('1'), UNK_ID]);
  assert.is(decode([BOS_ID, 4, 5, EOS_ID, PAD_ID]), '<bos>01<eos><pad>');
  assert.is(decode([BOS_ID, 4, 5, EOS_ID, PAD_ID], { skipSpecialTokens: true }), '01');
  assert.is(decodeResponse([5, 6, EOS_ID, 7, 8]), '12');
  assert.is(decodeResponse([5, PAD_ID, 6]), '12');
  assert.throws(() => decode([VOCAB_SIZE]), /outside the vocabulary/);
});

test('hand-checked: the expert distributions', () => {
  assert.equal([...expertDistribution('S3130=')], [['0133', 0.75], ['3310', 0.25]]);
  assert.equal([...expertDistribution('S7777=')], [['7777', 1]]);
  assert.equal([...expertDistribution('R1234567=')], [['7654321', 1]]);
  assert.equal([...expertDistribution('I0959=')], [['1060', 1]]);
  assert.equal([...expertDistribution('P123456=')], [['246135', 0.5], ['135246', 0.5]]);
  close(expertLogProb('S3130=', '3310'), Math.log(0.25));
  assert.is(expertLogProb('S3130=', '0134'), -Infinity);
  assert.throws(() => expertDistribution('X123='), /not a prompt/);
});

test('hand-checked: the weaker policy on R123 (swaps, off-by-one digits, shifted reversal, copy)', () => {
  // Target 321. Kinds: swaps {231, 312} (1/2 each); off by one {221, 421, 331, 311, 320, 322} (1/6 each);
  // shifted reversal {213, 132} (1/2 each); copy {123}. Each kind 1/4; nothing equals 321, so no renormalisation.
  const d = weakerDistribution('R123=');
  close(sum(d), 1);
  close(d.get('231')!, 1 / 8);
  close(d.get('421')!, 1 / 24);
  close(d.get('213')!, 1 / 8);
  close(d.get('123')!, 1 / 4);
  assert.is(d.size, 2 + 6 + 2 + 1);
  assert.not.ok(d.has('321'));
  close(weakerLogProb('R123=', '123'), Math.log(1 / 4));
  assert.is(weakerLogProb('R123=', '321'), -Infinity);
});

test('hand-checked: the weaker policy on S31 and I09 (a mistake that lands on a correct answer is removed)', () => {
  // S31: correct 13 (3/4), 31 (1/4). From 13: swap 31 (correct, removed), off by one {03, 23, 12, 14},
  // insertion sort one short: sorted head [3], then the last digit 1 -> 31 (correct, removed).
  const s = weakerDistribution('S31=');
  close(sum(s), 1);
  assert.not.ok(s.has('13') || s.has('31'));
  // From 13 (p 3/4, 3 kinds): each off-by-one 3/4 * 1/3 * 1/4 = 1/16; from 31 (p 1/4): 21, 41, 30, 32 each 1/4 * 1/3 * 1/4 = 1/48.
  // 14 and 41 etc. are distinct; the kept mass is 4/16 + 4/48 = 1/3, so 03 has (1/16) / (1/3) = 3/16.
  close(s.get('03')!, 3 / 16);
  close(s.get('41')!, 1 / 16);
  // I09: target 10. Swap 01; off by one {00, 20, 11}; skipped {00, 19}; doubled {20, 11}; no wrap {19}: five kinds of 1/5.
  const i = weakerDistribution('I09=');
  close(i.get('01')!, 1 / 5);
  close(i.get('00')!, 1 / 15 + 1 / 10);
  close(i.get('19')!, 1 / 10 + 1 / 5);
  close(sum(i), 1);
});

test('hand-checked: scores and exact match', () => {
  assert.is(score('S3130=', '0133'), 1);
  assert.is(score('S3130=', '3310'), 1);
  assert.is(score('S3130=', '0313'), 0.5); // vs 0133: positions 0 and 3
  assert.is(score('S3130=', '331'), 0.75); // vs 3310: three of max(3, 4)
  assert.is(score('R1234=', '43210'), 0.8); // vs 4321: four of max(5, 4)
  assert.is(score('R1234=', ''), 0);
  assert.is(score('I1234=', '23=5'), 0.75);
  assert.ok(exactMatch('P1234=', '1324'));
  assert.not.ok(exactMatch('P1234=', '1342'));
});

test('examples are determined by the seed; the splits share no prompt; sizes within bounds', () => {
  const a = taskSplits({ train: 400, eval: 100 }, 7);
  const b = taskSplits({ train: 400, eval: 100 }, 7);
  assert.equal(a, b);
  assert.not.equal(taskExamples('train', 50, 8), a.train.slice(0, 50));
  // The train stream does not depend on the eval size.
  assert.equal(taskExamples('train', 400, 7), a.train);
  const trainPrompts = new Set(a.train.map((e) => e.prompt));
  assert.is(trainPrompts.size, 400);
  for (const e of a.eval) assert.not.ok(trainPrompts.has(e.prompt));
  for (const e of a.train) assert.is(splitOf(e.prompt), 'train');
  for (const e of a.eval) assert.is(splitOf(e.prompt), 'eval');
  for (const e of [...a.train, ...a.eval]) {
    const enc = encodeTaskExample(e);
    assert.ok(enc.promptLength >= 10 && enc.promptLength <= MAX_PROMPT_TOKENS);
    assert.ok(enc.responseLength >= 8 && enc.responseLength <= MAX_RESPONSE_TOKENS);
  }
});

test('demonstrations score 1, rejected responses below 1 on every example; reference numbers', () => {
  const { train, eval: held } = taskSplits({ train: 2000, eval: 500 }, 1);
  for (const e of [...train, ...held]) {
    assert.is(score(e.prompt, e.demonstration), 1, e.prompt);
    assert.ok(exactMatch(e.prompt, e.demonstration));
    assert.ok(score(e.prompt, e.rejected) < 1, `${e.prompt} ${e.rejected}`);
    assert.not.ok(exactMatch(e.prompt, e.rejected));
    assert.ok(Number.isFinite(expertLogProb(e.prompt, e.demonstration)));
    assert.ok(Number.isFinite(weakerLogProb(e.prompt, e.rejected)));
    assert.is(e.rejected.length, e.demonstration.length);
  }
  const ref = referenceNumbers(held);
  console.log(`  expert task (eval, 500): rejected mean score ${ref.rejectedScore.toFixed(4)}, exact ${ref.rejectedExact}, ` +
    `mean log pi_expert(demo) ${ref.expertLogProbDemo.toFixed(4)}, mean log pi_weaker(rejected) ${ref.weakerLogProbRejected.toFixed(4)}`);
  assert.ok(ref.rejectedScore > 0.5 && ref.rejectedScore < 0.95);
  assert.is(ref.rejectedExact, 0);
  for (const op of 'SRIP') {
    const mine = held.filter((e) => e.prompt[0] === op);
    assert.ok(mine.length > 80, op);
    console.log(`    ${op}: ${mine.length} examples, rejected mean score ${referenceNumbers(mine).rejectedScore.toFixed(4)}`);
  }
  // The expert is stochastic: both sort directions and both partition orders appear among the demonstrations.
  const desc = train.filter((e) => e.prompt[0] === 'S' && e.demonstration !== [...e.demonstration].sort().join(''));
  assert.ok(desc.length > 50);
});

test('ops: the prompts use only the operations asked for; all of OPS is the default stream; an unknown one throws', () => {
  const sr = taskExamples('train', 200, 5, { minDigits: 3, maxDigits: 5, ops: ['S', 'R'] });
  assert.equal([...new Set(sr.map((e) => e.prompt[0]))].sort(), ['R', 'S']);
  for (const e of sr) assert.ok(/^[SR]\d{3,5}=$/.test(e.prompt), e.prompt);
  assert.equal(taskExamples('train', 50, 5, { ops: OPS }), taskExamples('train', 50, 5));
  assert.throws(() => taskExamples('train', 1, 5, { ops: [] }), /non-empty subset/);
  assert.throws(() => taskExamples('train', 1, 5, { ops: ['X' as 'S'] }), /non-empty subset/);
});

test('the task plugs into train/data/encode.ts: same ids and mask as encodeTaskExample', () => {
  const [e] = taskExamples('train', 1, 3);
  const direct = encodeTaskExample(e);
  const viaEncode = encodeExample(taskTokenizer, toExample(e, 0, 'train'));
  assert.equal(viaEncode.ids, direct.ids);
  assert.equal(viaEncode.responseMask, direct.responseMask);
  assert.is(viaEncode.promptLength, direct.promptLength);
  assert.equal(viaEncode.rejected!.ids, direct.rejected.ids);
  assert.equal(viaEncode.source, { file: 'expert_task:train', line: 1 });
  // BOS, prompt, response, EOS; the mask covers the response and EOS.
  assert.is(direct.ids[0], BOS_ID);
  assert.is(direct.ids[direct.ids.length - 1], EOS_ID);
  assert.is(decode(direct.ids.subarray(1, direct.promptLength)), e.prompt);
  assert.is(decodeResponse(direct.ids.subarray(direct.promptLength)), e.demonstration);
  assert.is(direct.responseMask.reduce((s, m) => s + m, 0), e.demonstration.length + 1);
  assert.is(direct.responseMask[direct.promptLength - 1], 0);
  assert.is(direct.responseMask[direct.promptLength], 1);
});

test.run();
