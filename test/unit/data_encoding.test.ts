// Encoding: truncation and response masks against hand-made ids with a byte-level tokenizer built
// by test/support/byte_model.ts (id = byte, 256 <|bos|>, 257 <|eos|>, 258 <|pad|>, like ../shared/data/hh-byte-base), the
// TRL boundary rule, chat templates; and the real HH record when ../shared/data is present. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tokenizer } from '../../models/tokenizer.ts';
import { writeByteTokenizer } from '../support/byte_model.ts';
import { SHARED_DATA } from '../support/paths.ts';
import { ChatTemplate, ChatTemplateError, encodeExample, encodeTexts, exampleTexts, hhDialogue, readExamples, type Example, type TokenizerLike } from '../../train/data/index.ts';

const SHARED = SHARED_DATA;
const hasShared = fs.existsSync(path.join(SHARED, 'hh-byte-base', 'tokenizer.json')) && fs.existsSync(path.join(SHARED, 'hh-rlhf'));
if (!hasShared) console.log(`data_encoding: skipping the hh-byte-base tokenizer and HH-RLHF tests: ${SHARED} lacks them`);

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-encoding-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

writeByteTokenizer(path.join(tmpDir, 'bytes'));
const bytes = Tokenizer.fromFolder(path.join(tmpDir, 'bytes'));
const BOS = 256;
const EOS = 257;
const codes = (s: string) => Array.from(Buffer.from(s, 'utf8'));
const mask = (prompt: number, response: number) => [...Array(prompt).fill(0), ...Array(response).fill(1)];
const src = { file: 'x.jsonl', line: 1 };

test('the byte tokenizer built here: BOS + UTF-8 bytes (and matches hh-byte-base when present)', () => {
  assert.equal([bytes.bosTokenId, bytes.eosTokenId, bytes.padTokenId], [256, 257, 258]);
  assert.equal(bytes.encode('a’'), [256, 97, 226, 128, 153]);
  if (!hasShared) return;
  const real = Tokenizer.fromFolder(path.join(SHARED, 'hh-byte-base'));
  const text = "\n\nHuman: Don’t swear!\n\nAssistant: <|eos|> ok";
  assert.equal(real.encode(text), bytes.encode(text));
});

test('no truncation: BOS, prompt, response, EOS; the mask covers the response and EOS', () => {
  const e = encodeTexts(bytes, 'ab', 'cd');
  assert.equal(Array.from(e.ids), [BOS, 97, 98, 99, 100, EOS]);
  assert.equal(Array.from(e.responseMask), mask(3, 3));
  assert.equal([e.promptLength, e.responseLength, e.truncated], [3, 3, { prompt: false, response: false }]);
  // A response whose text already ends with EOS gets no second one; a prompt starting with BOS text gets no second BOS.
  assert.equal(Array.from(encodeTexts(bytes, '<|bos|>ab', 'cd<|eos|>').ids), [BOS, 97, 98, 99, 100, EOS]);
  assert.equal(Array.from(encodeTexts(bytes, 'ab', 'cd', { appendEos: false }).ids), [BOS, 97, 98, 99, 100]);
});

test('truncation: the prompt keeps BOS and its end; EOS is appended before the response is cut', () => {
  const p = encodeTexts(bytes, 'abcdefgh', 'xy', { maxPromptLength: 4 });
  assert.equal(Array.from(p.ids), [BOS, ...codes('fgh'), ...codes('xy'), EOS]);
  assert.equal([p.promptLength, p.responseLength, p.truncated], [4, 3, { prompt: true, response: false }]);
  // prompt 3 (BOS ab) + response 6 (cdefg EOS) cut to maxLength 6: the response keeps 3 tokens and loses EOS.
  const m = encodeTexts(bytes, 'ab', 'cdefg', { maxPromptLength: 4, maxLength: 6 });
  assert.equal(Array.from(m.ids), [BOS, ...codes('abcde')]);
  assert.equal(Array.from(m.responseMask), mask(3, 3));
  assert.equal([m.responseLength, m.truncated], [3, { prompt: false, response: true }]);
  const fits = encodeTexts(bytes, 'ab', 'cde', { maxPromptLength: 4, maxLength: 7 });
  assert.equal([fits.ids[fits.ids.length - 1], fits.truncated.response], [EOS, false]);
  const r = encodeTexts(bytes, 'ab', 'cdefg', { maxResponseLength: 2 });
  assert.equal([Array.from(r.ids), r.truncated.response], [[BOS, ...codes('abcd')], true]);
  // Both cuts: the prompt to 4, then the response to 2 by maxResponseLength, then to 8 - 4 = 4 (already shorter).
  const both = encodeTexts(bytes, 'abcdefgh', 'ijklmn', { maxPromptLength: 4, maxLength: 8, maxResponseLength: 2 });
  assert.equal(Array.from(both.ids), [BOS, ...codes('fghij')]);
  assert.throws(() => encodeTexts(bytes, 'a', 'b', { maxPromptLength: 8, maxLength: 8 }), /maxPromptLength \(8\) must be less than maxLength \(8\)/);
  assert.throws(() => encodeTexts(bytes, 'a', 'b', { maxResponseLength: 0 }), /maxResponseLength must be a positive integer/);
});

// A tokenizer without BOS that merges "ab" into one token (1000): the boundary rule of TRL.
const merging: TokenizerLike = {
  bosTokenId: null,
  eosTokenId: 2,
  encode: (text: string) => {
    const ids: number[] = [];
    for (let i = 0; i < text.length; i++) {
      if (text.startsWith('ab', i)) ids.push(1000), i++;
      else ids.push(text.charCodeAt(i));
    }
    return ids;
  },
};

test('a token merged across the prompt/response boundary goes to the response; without BOS the prompt simply keeps its end', () => {
  const e = encodeTexts(merging, 'xa', 'bc');
  assert.equal(Array.from(e.ids), [120, 1000, 99, 2]);
  assert.equal([e.promptLength, e.responseLength], [1, 3]);
  const t = encodeTexts(merging, 'wxyz', 'q', { maxPromptLength: 2 });
  assert.equal(Array.from(t.ids), [121, 122, 113, 2]);
  assert.throws(() => encodeTexts({ ...merging, eosTokenId: null }, 'a', 'b'), /names no EOS token: pass eosTokenId, or appendEos: false/);
  assert.equal(Array.from(encodeTexts({ ...merging, eosTokenId: null }, 'x', 'y', { eosTokenId: 7 }).ids), [120, 121, 7]);
});

test('encodeExample encodes the rejected response after the same prompt', () => {
  const e = encodeExample(bytes, { prompt: 'ab', response: 'cd', rejected: 'xyz', source: src }, { maxLength: 6, maxPromptLength: 4 });
  assert.equal(Array.from(e.ids), [BOS, 97, 98, 99, 100, EOS]);
  assert.equal(Array.from(e.rejected!.ids), [BOS, 97, 98, ...codes('xyz')]);
  assert.equal([e.rejected!.truncated.response, e.source], [true, src]);
  assert.is(encodeExample(bytes, { prompt: 'a', response: 'b', source: src }).rejected, undefined);
});

// Zephyr's template (HuggingFaceH4/zephyr-7b-beta, the chat format of zephyr-7b-sft-full), verbatim.
const ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
// Mistral-7B-Instruct-v0.1's template, verbatim.
const MISTRAL_INSTRUCT = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const chat: Example = {
  prompt: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name a colour.' }],
  response: 'Blue.',
  rejected: 'No.',
  source: src,
};

test('chat templates: Zephyr and Mistral-Instruct prompt and response texts', () => {
  const zephyr = new ChatTemplate(ZEPHYR, { bos_token: '<s>', eos_token: '</s>' });
  assert.equal(exampleTexts(chat, zephyr), {
    prompt: '<|system|>\nBe brief.</s>\n<|user|>\nName a colour.</s>\n<|assistant|>\n',
    response: 'Blue.</s>', // the template's newline after eos_token is dropped
    rejected: 'No.</s>',
  });
  const mistral = new ChatTemplate(MISTRAL_INSTRUCT, { bos_token: '<s>', eos_token: '</s>' });
  const user: Example = { ...chat, prompt: [{ role: 'user', content: 'Name a colour.' }] };
  assert.equal(exampleTexts(user, mistral), { prompt: '<s>[INST] Name a colour. [/INST]', response: 'Blue.</s>', rejected: 'No.</s>' });
  assert.throws(() => exampleTexts(chat, mistral), (e: Error) => e instanceof ChatTemplateError && e.message === 'chat_template: rendering failed: Conversation roles must alternate user/assistant/user/assistant/...');
  // Through the byte tokenizer with its own special tokens: one BOS (the template's), one EOS (the template's).
  const byteMistral = new ChatTemplate(MISTRAL_INSTRUCT, { bos_token: '<|bos|>', eos_token: '<|eos|>' });
  const e = encodeExample(bytes, user, { template: byteMistral });
  assert.equal(Array.from(e.ids), [BOS, ...codes('[INST] Name a colour. [/INST]'), ...codes('Blue.'), EOS]);
  assert.is(e.promptLength, 1 + '[INST] Name a colour. [/INST]'.length);
});

test('a template that does not render the prompt as a prefix is a clear error', () => {
  const bad = new ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}GEN{% endif %}", {}, 'bad.json: chat_template');
  assert.throws(() => exampleTexts({ ...chat, prompt: [{ role: 'user', content: 'Hi' }] }, bad),
    (e: Error) => e instanceof ChatTemplateError && e.message === 'bad.json: chat_template: the prompt rendered with add_generation_prompt is not a prefix of the conversation with the assistant turn: they differ from character 2: "GEN" vs "Blue."');
  assert.throws(() => new ChatTemplate('{% for %}'), (e: Error) => e instanceof ChatTemplateError && e.message.startsWith('chat_template: cannot parse the template'));
});

test('templates from tokenizer_config.json: the string, special tokens as AddedToken objects, named lists, none', () => {
  const dir = path.join(tmpDir, 'cfg');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'tokenizer_config.json');
  fs.writeFileSync(file, JSON.stringify({ chat_template: ZEPHYR, bos_token: { content: '<s>', special: true }, eos_token: '</s>', pad_token: null }));
  const t = ChatTemplate.fromTokenizerConfig(dir)!;
  assert.equal(t.specialTokens, { bos_token: '<s>', eos_token: '</s>' });
  assert.is(exampleTexts(chat, t).response, 'Blue.</s>');
  fs.writeFileSync(file, JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: ZEPHYR }], eos_token: '</s>' }));
  assert.is(ChatTemplate.fromTokenizerConfig(file)!.source, ZEPHYR);
  fs.writeFileSync(file, JSON.stringify({ eos_token: '</s>' }));
  assert.is(ChatTemplate.fromTokenizerConfig(file), null);
  const mistralBase = path.join(SHARED, 'tokenizers', 'mistral-7b-v0.1');
  if (fs.existsSync(mistralBase)) assert.is(ChatTemplate.fromTokenizerConfig(mistralBase), null); // the base model has no template
});

test('chat messages without a template become an HH dialogue; text prompts are used as written', () => {
  assert.equal(exampleTexts(chat, null), { prompt: 'Be brief.\n\nHuman: Name a colour.\n\nAssistant:', response: ' Blue.', rejected: ' No.' });
  assert.is(hhDialogue([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }]), '\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:');
  assert.throws(() => hhDialogue([{ role: 'tool', content: 'x' }]), /message 0 has role "tool"/);
  const zephyr = new ChatTemplate(ZEPHYR, { eos_token: '</s>' });
  assert.equal(exampleTexts({ prompt: 'P:', response: ' r', source: src }, zephyr), { prompt: 'P:', response: ' r' });
});

test('real HH record through hh-byte-base: 128 prompt tokens (BOS + the last 127 bytes), the response bytes and EOS', async () => {
  if (!hasShared) return;
  const tokenizer = Tokenizer.fromFolder(path.join(SHARED, 'hh-byte-base'));
  const { examples } = await readExamples(path.join(SHARED, 'hh-rlhf', 'harmless-base-test.train.jsonl.gz'), { limit: 1 });
  const e = encodeExample(tokenizer, examples[0]);
  const prompt = Buffer.from(examples[0].prompt as string, 'utf8');
  assert.is(prompt.length, 253); // 251 characters; "shouldn’t" has a 3-byte apostrophe
  assert.equal(Array.from(e.ids.subarray(0, 128)), [BOS, ...prompt.subarray(253 - 127)]);
  assert.is(tokenizer.decode(Array.from(e.ids.subarray(128))), " Kids shouldn't say the s-word or the f-word, which are quite rude.<|eos|>");
  assert.equal([e.promptLength, e.responseLength, e.truncated], [128, 68, { prompt: true, response: false }]);
  assert.equal([e.rejected!.promptLength, e.rejected!.responseLength], [128, 99]);
});

test.run();
