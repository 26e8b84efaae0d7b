// Tokenizer: a hand-written tiny BPE (always), the real GPT-NeoX and Mistral tokenizers when
// ../shared/data is present. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer, TokenizerError } from '../../models/tokenizer.ts';

// Vocabulary of the tiny fixture: 0 <unk>, 1 <s>, 2 </s>, 3 <pad>, 4 <0x0A>, 5 ▁, 6 h, 7 e, 8 l, 9 o,
// 10 w, 11 r, 12 d, 13 ll, 14 he, 15 hell, 16 hello, 17 ▁hello, 18 or, 19 wor, 20 ▁wor, 21 ▁worl, 22 ▁world;
// Metaspace (prepend ▁ to the first section), byte fallback, <s> prepended by the post-processor.
const TINY = fileURLToPath(new URL('../fixtures/tokenizer/', import.meta.url));
const TOKENIZERS = fileURLToPath(new URL('../../../shared/data/tokenizers/', import.meta.url));
const hasReal = fs.existsSync(TOKENIZERS);
if (!hasReal) console.log(`tokenizer: skipping the GPT-NeoX and Mistral tokenizer tests: ${TOKENIZERS} is absent`);

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-tokenizer-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

test('tiny BPE: exact ids with and without <s>, merges by rank, byte fallback, unknown characters', () => {
  const t = Tokenizer.fromFolder(TINY);
  assert.equal(t.encode('hello world'), [1, 17, 22]);
  assert.equal(t.encode('hello world', { addSpecialTokens: false }), [17, 22]);
  assert.equal(t.encode('world hello', { addSpecialTokens: false }), [22, 17]);
  assert.equal(t.encode('hello\nworld', { addSpecialTokens: false }), [17, 4, 19, 8, 12]); // "\n" -> <0x0A>; "world" without ▁ stops at "wor"
  assert.equal(t.encode('hold', { addSpecialTokens: false }), [5, 6, 9, 8, 12]);
  assert.equal(t.encode('hello z', { addSpecialTokens: false }), [17, 5, 0]); // no <0x7A>: <unk>
  assert.equal(t.encode('hello</s>'), [1, 17, 2]); // special tokens in the text are matched whole
});

test('tiny BPE: special token ids, vocab size, decode', () => {
  const t = Tokenizer.fromFolder(TINY);
  assert.equal([t.bosTokenId, t.eosTokenId, t.padTokenId, t.vocabSize], [1, 2, 3, 23]);
  assert.is(t.decode([1, 17, 22]), '<s> hello world');
  assert.is(t.decode([1, 17, 22], { skipSpecialTokens: true }), 'hello world');
  assert.is(t.decode([17, 4, 19, 8, 12]), 'hello\nworld');
  assert.is(t.decode([17, 99, 22]), 'hello world'); // ids outside the vocabulary decode to nothing
  assert.is(t.decode([]), '');
  for (const text of ['hello world', 'hello\nworld', 'world hello hold']) assert.is(t.decode(t.encode(text), { skipSpecialTokens: true }), text);
});

test('a missing or malformed tokenizer.json is a TokenizerError naming the file', () => {
  const dir = fs.mkdtempSync(path.join(tmpDir, 'bad-'));
  const file = path.join(dir, 'tokenizer.json');
  const failsWith = (needle: string) => assert.throws(() => Tokenizer.fromFolder(dir),
    (e: Error) => e instanceof TokenizerError && e.message.startsWith(file) && e.message.includes(needle));
  failsWith('cannot read');
  fs.writeFileSync(file, '{"model": ');
  failsWith('not valid JSON');
  fs.writeFileSync(file, '[1, 2]');
  failsWith('must be a JSON object');
  fs.writeFileSync(file, JSON.stringify({ model: { type: 'NoSuchModel', vocab: {} }, added_tokens: [] }));
  failsWith('@huggingface/tokenizers cannot load it');
  fs.copyFileSync(path.join(TINY, 'tokenizer.json'), file);
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{');
  assert.throws(() => Tokenizer.fromFolder(dir), (e: Error) => e instanceof TokenizerError && e.message.startsWith(path.join(dir, 'tokenizer_config.json')));
});

if (hasReal) {
  /** The id the tokenizer.json's own vocabulary gives a token: checks the library against the file. */
  const vocabId = (dir: string, token: string) => (JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab[token];
  const roundTrips = ['Hello world', '\n\nHuman: hi\n\nAssistant:', 'Grüße, 世界! 🙂 — naïve café', 'a . b , c', 'tab\tand\r\nnewline'];

  test('GPT-NeoX-20B tokenizer: known ids, vocab size, round trips', () => {
    const dir = path.join(TOKENIZERS, 'gpt-neox-20b');
    const t = Tokenizer.fromFolder(dir);
    assert.equal(t.encode('Hello world'), [12092, 1533]);
    assert.equal([vocabId(dir, 'Hello'), vocabId(dir, 'Ġworld')], [12092, 1533]);
    // byte-level: each "\n" before a word is its own pre-token (Ċ = 187); "Assistant" is Ass + istant
    assert.equal(t.encode('\n\nHuman: hi\n\nAssistant:'), [187, 187, 22705, 27, 14260, 187, 187, 6717, 5567, 27]);
    assert.is(t.vocabSize, 50277);
    assert.is(t.tokenToId('<|endoftext|>'), 0);
    // this folder has no tokenizer_config.json, so the tokenizer names no special tokens
    assert.equal([t.bosTokenId, t.eosTokenId, t.padTokenId], [null, null, null]);
    for (const text of [...roundTrips, '  two  spaces ']) assert.is(t.decode(t.encode(text)), text, JSON.stringify(text));
  });

  test('Mistral-7B tokenizer: <s> first, known ids, special tokens from tokenizer_config.json, round trips', () => {
    const dir = path.join(TOKENIZERS, 'mistral-7b-v0.1');
    const t = Tokenizer.fromFolder(dir);
    assert.equal(t.encode('Hello world'), [1, 22557, 1526]);
    assert.equal([vocabId(dir, '<s>'), vocabId(dir, '▁Hello'), vocabId(dir, '▁world')], [1, 22557, 1526]);
    assert.equal(t.encode('Hello world', { addSpecialTokens: false }), [22557, 1526]);
    // "\n" is byte-fallback <0x0A> = 13; "Human" is not in the vocabulary, so H + uman
    assert.equal(t.encode('\n\nHuman: hi', { addSpecialTokens: false }), [28705, 13, 13, 28769, 6366, 28747, 12014]);
    assert.equal([t.bosTokenId, t.eosTokenId, t.padTokenId, t.vocabSize], [1, 2, null, 32000]);
    assert.is(t.decode([1, 22557, 1526]), '<s> Hello world');
    for (const text of roundTrips) {
      assert.is(t.decode(t.encode(text), { skipSpecialTokens: true }), text, JSON.stringify(text));
      assert.is(t.decode(t.encode(text, { addSpecialTokens: false })), text, JSON.stringify(text));
    }
  });
}

test.run();
