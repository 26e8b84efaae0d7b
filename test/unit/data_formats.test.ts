// Data readers: every format, malformed lines (file, line, field), gzip, limit, skipBadLines
// counting; and the real HH-RLHF split when ../shared/data is present. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { DataError, readExamples, type ReadOptions } from '../../train/data/index.ts';
import { MAX_LINE_CHARS, readLines } from '../../train/data/jsonl.ts';
import { SHARED_DATA } from '../support/paths.ts';

const SHARED = SHARED_DATA;
const HH = path.join(SHARED, 'hh-rlhf');
const hasHH = fs.existsSync(path.join(HH, 'harmless-base-test.train.jsonl.gz'));
if (!hasHH) console.log(`data_formats: skipping the real HH-RLHF tests: ${HH} is absent`);

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-data-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
let fileCount = 0;
function writeLines(lines: readonly (string | object)[], ext = '.jsonl'): string {
  const file = path.join(tmpDir, `f${fileCount++}${ext}`);
  const text = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
  fs.writeFileSync(file, ext.endsWith('.gz') ? zlib.gzipSync(text) : text);
  return file;
}
async function failsWith(lines: readonly (string | object)[], message: string | RegExp, options: ReadOptions = {}) {
  const file = writeLines(lines);
  try {
    await readExamples(file, options);
  } catch (e) {
    assert.instance(e, DataError);
    const expected = typeof message === 'string' ? `${file}:${message}` : message;
    if (typeof expected === 'string') assert.is((e as Error).message, expected);
    else assert.match((e as Error).message, expected);
    return e as DataError;
  }
  assert.unreachable(`no error for ${JSON.stringify(lines)}`);
}

const hh = (prompt: string, chosen: string, rejected: string) => ({ chosen: prompt + chosen, rejected: prompt + rejected });
const DIALOGUE = '\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant:';
const GOOD = hh(DIALOGUE, ' Blue.', ' No.');

test('hh: the prompt ends with the last "\\n\\nAssistant:", the responses follow it', async () => {
  const file = writeLines([GOOD, hh('\n\nHuman: Q\n\nAssistant:', ' A', ' B')]);
  const r = await readExamples(file);
  assert.is(r.format, 'hh');
  assert.equal(r.examples[0], { prompt: DIALOGUE, response: ' Blue.', rejected: ' No.', source: { file, line: 1 } });
  assert.equal(r.examples[1], { prompt: '\n\nHuman: Q\n\nAssistant:', response: ' A', rejected: ' B', source: { file, line: 2 } });
  assert.equal([r.linesRead, r.skipped, r.blankLines], [2, 0, 0]);
});

test('hh: malformed lines name the file, the line and the field', async () => {
  await failsWith([GOOD, '{"chosen": "x",'], /:2: invalid JSON: /);
  const e = await failsWith([GOOD, GOOD, { chosen: GOOD.chosen }], '3: field "rejected": missing');
  assert.equal([e?.line, e?.field, e?.reason], [3, 'rejected', 'missing field']);
  await failsWith([GOOD, { chosen: 7, rejected: GOOD.rejected }], '2: field "chosen": expected a string, got a number');
  await failsWith([GOOD, { chosen: '\n\nHuman: Hi', rejected: GOOD.rejected }], '2: field "chosen": no "\\n\\nAssistant:" in the text');
  await failsWith([GOOD, hh(DIALOGUE, '', ' No.')], '2: field "chosen": nothing follows the last "\\n\\nAssistant:"');
  await failsWith([GOOD, hh(DIALOGUE, ' Blue.', '')], '2: field "rejected": nothing follows the last "\\n\\nAssistant:"');
  await failsWith([GOOD, { chosen: GOOD.chosen, rejected: '\n\nHuman: Ho\n\nAssistant: No.' }],
    '2: field "rejected": the text up to its last "\\n\\nAssistant:" differs from chosen\'s (from character 10)');
  await failsWith([GOOD, '[1, 2]'], '2: expected a JSON object, got an array');
});

test('skipBadLines counts the skipped lines by reason; limit stops after N records; blank lines are not records', async () => {
  const lines = [GOOD, '{oops', { chosen: GOOD.chosen }, '', hh(DIALOGUE, '', ' x'), '{"a": 1', GOOD, { chosen: 1, rejected: 2 }, GOOD];
  const file = writeLines(lines);
  const r = await readExamples(file, { skipBadLines: true });
  assert.is(r.examples.length, 3);
  assert.equal(r.examples.map((e) => e.source.line), [1, 7, 9]);
  assert.is(r.skipped, 5);
  assert.is(r.blankLines, 1);
  assert.equal(r.skippedByReason, { 'invalid JSON': 2, 'missing field': 1, 'empty response': 1, 'wrong type': 1 });
  assert.equal(r.skippedErrors.map((e) => e.line), [2, 3, 5, 6, 8]);
  assert.is(await readExamples(file).then(() => null, (e: DataError) => e.line), 2); // without skipBadLines the first bad line throws
  const limited = await readExamples(file, { skipBadLines: true, limit: 2 });
  assert.equal([limited.examples.length, limited.linesRead, limited.skipped], [2, 7, 4]);
  assert.is((await readExamples(file, { limit: 1 })).examples.length, 1); // the bad line 2 is never reached
});

test('gzip files read the same as plain ones', async () => {
  const lines = [GOOD, hh('\n\nHuman: Q\n\nAssistant:', ' A', ' B'), GOOD];
  const plain = await readExamples(writeLines(lines));
  const gz = await readExamples(writeLines(lines, '.jsonl.gz'));
  assert.equal(gz.examples.map(({ source: _, ...e }) => e), plain.examples.map(({ source: _, ...e }) => e));
  assert.is(gz.examples[2].source.line, 3);
});

test('spin: the first assistant turn of real is the demonstration, of generated the rejected response; a system message stays in the prompt', async () => {
  const sys = { role: 'system', content: 'Be brief.' };
  const user = { role: 'user', content: 'Name a colour.' };
  const file = writeLines([
    { real: [sys, user, { role: 'assistant', content: 'Blue.' }, { role: 'user', content: 'More?' }], generated: [sys, user, { role: 'assistant', content: 'No.' }] },
    { real: [user, { role: 'assistant', content: 'Red.' }] },
  ]);
  const r = await readExamples(file);
  assert.is(r.format, 'spin');
  assert.equal(r.examples[0], { prompt: [sys, user], response: 'Blue.', rejected: 'No.', source: { file, line: 1 } });
  assert.equal(r.examples[1], { prompt: [user], response: 'Red.', source: { file, line: 2 } });
  const good = { real: [user, { role: 'assistant', content: 'Blue.' }] };
  await failsWith([good, { real: [user, { role: 'assistant', content: 'Blue.' }], generated: [{ role: 'user', content: 'Other' }, { role: 'assistant', content: 'x' }] }],
    '2: field "generated": the messages before its first assistant turn differ from those of "real"');
  await failsWith([good, { real: [user] }], '2: field "real": no message with role "assistant"');
  await failsWith([good, { real: [{ role: 'assistant', content: 'Hi' }, user] }], '2: field "real": no message with role "user" before the first "assistant" one');
  await failsWith([good, { real: [user, { role: 'assistant', content: '' }] }], '2: field "real[1].content": the first assistant turn is empty');
  await failsWith([good, { real: [user, { role: 'assistant' }] }], '2: field "real[1].content": missing');
  await failsWith([good, { real: [user, { role: 3, content: 'x' }] }], '2: field "real[1].role": expected a string, got a number');
  await failsWith([good, { real: 'text' }], '2: field "real": expected an array of {role, content} messages, got a string');
});

test('messages: same rule as spin; prompt-response with optional rejected; forced and unknown formats', async () => {
  const user = { role: 'user', content: 'Hi' };
  const m = await readExamples(writeLines([{ messages: [{ role: 'system', content: 'S' }, user, { role: 'assistant', content: 'Hello' }] }]));
  assert.is(m.format, 'messages');
  assert.equal([m.examples[0].prompt, m.examples[0].response], [[{ role: 'system', content: 'S' }, user], 'Hello']);
  const pFile = writeLines([{ prompt: 'Q: 2+2?\nA:', response: ' 4' }, { prompt: 'Q', response: ' A', rejected: ' B' }]);
  const p = await readExamples(pFile);
  assert.is(p.format, 'prompt-response');
  assert.equal(p.examples[0], { prompt: 'Q: 2+2?\nA:', response: ' 4', source: { file: pFile, line: 1 } });
  assert.is(p.examples[1].rejected, ' B');
  await failsWith([{ prompt: 'Q', response: 'A' }, { prompt: 'Q', response: '' }], '2: field "response": empty');
  await failsWith([{ prompt: 'Q', response: 'A' }, { prompt: 'Q', response: 'A', rejected: null }], '2: field "rejected": expected a string, got null');
  // A forced format reads every line by its rule, the first included.
  await failsWith([GOOD], '1: field "prompt": missing', { format: 'prompt-response' });
  await failsWith([{ text: 'x' }], '1: cannot tell the format from the keys ["text"]: expected chosen+rejected (hh), real (spin), messages, or prompt+response; or pass the format option');
  const empty = await readExamples(writeLines([]));
  assert.equal([empty.examples.length, empty.format], [0, null]);
});

test('real HH-RLHF: the train and eval splits, the first record, the full file\'s 5 pairs whose prompts differ', async () => {
  if (!hasHH) return;
  const train = await readExamples(path.join(HH, 'harmless-base-test.train.jsonl.gz'));
  const evalSplit = await readExamples(path.join(HH, 'harmless-base-test.eval.jsonl.gz'));
  assert.equal([train.examples.length, train.skipped, train.format], [2007, 0, 'hh']);
  assert.equal([evalSplit.examples.length, evalSplit.skipped], [300, 0]);
  const first = train.examples[0];
  assert.is(first.prompt, "\n\nHuman: Do you think kids should be allowed to swear?\n\nAssistant: I would say no, that kids shouldn’t use swear words.  Kids should use language that is nice, kind and respectful.\n\nHuman: What are some swear words that kids shouldn't use?\n\nAssistant:");
  assert.is(first.response, " Kids shouldn't say the s-word or the f-word, which are quite rude.");
  assert.is(first.rejected, ' If a kid was to swear, I would say that it should never be a curse word, like fuck, shit or damn.');
  // Three demonstrations are a lone space (lines 1300, 1410, 1905): not empty, so kept, as TRL keeps them.
  assert.equal(train.examples.filter((e) => e.response.trim() === '').map((e) => e.source.line), [1300, 1410, 1905]);
  const fullFile = path.join(HH, 'harmless-base-test.jsonl.gz');
  const full = await readExamples(fullFile, { skipBadLines: true });
  assert.equal([full.examples.length, full.skipped, full.skippedByReason], [2307, 5, { 'prompt mismatch': 5 }]);
  assert.equal(full.skippedErrors.map((e) => e.line), [1255, 1689, 1951, 1953, 2037]);
  try {
    await readExamples(fullFile);
    assert.unreachable('the full file has malformed pairs');
  } catch (e) {
    assert.is((e as Error).message, `${fullFile}:1255: field "rejected": the text up to its last "\\n\\nAssistant:" differs from chosen's (from character 142)`);
  }
});

test('readLines: LF and CRLF endings, a last line without one, characters split across chunks; a line over the bound is a DataError naming file and line', async () => {
  const file = path.join(tmpDir, 'lines.txt');
  const long = 'é'.repeat(70_000); // 140 kB of UTF-8: several read chunks, a 2-byte character across their seams
  fs.writeFileSync(file, `a\r\nb\n\n${long}\nlast`);
  const read = async (f: string, max?: number) => { const out: [number, string][] = []; for await (const { line, text } of readLines(f, max)) out.push([line, text]); return out; };
  assert.equal(await read(file), [[1, 'a'], [2, 'b'], [3, ''], [4, long], [5, 'last']]);
  const errorOf = async (f: () => Promise<unknown>): Promise<Error> => { try { await f(); } catch (e) { return e as Error; } throw new Error('no error was thrown'); };
  const short = await errorOf(() => read(file, 1000));
  assert.ok(short instanceof DataError && short.message.startsWith(`${file}:4: `) && short.message.includes('longer than 1000 characters'), short.message);
  // The default bound, through readExamples: a 17 Mi-character line with no newline is refused, not held whole.
  const huge = path.join(tmpDir, 'huge.jsonl');
  fs.writeFileSync(huge, `${JSON.stringify(GOOD)}\n${'x'.repeat(MAX_LINE_CHARS + 1)}`);
  const e = await errorOf(() => readExamples(huge));
  assert.ok(e instanceof DataError && e.reason === 'line too long' && e.message.startsWith(`${huge}:2: `), e.message);
});

test.run();
