// A tiny byte-level GPT-NeoX model folder for training tests and trials, made on the host (no GPU): config.json,
// model.safetensors initialised as models/init.ts does (normal(0, 0.02) matrices, zero biases, unit norms), a
// tokenizer.json of single bytes that prepends <|bos|> (256; <|eos|> 257, <|pad|> 258, like hh-byte-base) and
// its tokenizer_config.json. Usage as a script: tsx test/support/byte_model.ts DIR [config.json to copy the shape of]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../engine/safetensors.ts';
import { rng } from '../../engine/random.ts';
import { numelOf } from '../../engine/tensor.ts';
import { modelParams, parseConfig } from '../../models/config.ts';
import { INITIALIZER_RANGE } from '../../models/init.ts';

/** GPT-2's byte-to-character table, which byte-level BPE vocabularies are written in. */
function byteChars(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(printable(b) ? b : 256 + extra++));
  return chars;
}

export function writeByteTokenizer(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  byteChars().forEach((c, b) => (vocab[c] = b));
  const added = ['<|bos|>', '<|eos|>', '<|pad|>'].map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: byteLevel, decoder: byteLevel,
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|bos|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<|bos|>': { id: '<|bos|>', ids: [256], tokens: ['<|bos|>'] } } },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|bos|>', eos_token: '<|eos|>', pad_token: '<|pad|>' }));
}

/** A tiny GPT-NeoX config over the byte vocabulary (259 tokens + 1 spare, as hh-byte-base's 260). */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['GPTNeoXForCausalLM'], model_type: 'gpt_neox', vocab_size: 260, hidden_size: 32, num_hidden_layers: 2,
    num_attention_heads: 4, intermediate_size: 64, hidden_act: 'gelu', rotary_pct: 0.25, rotary_emb_base: 10000,
    max_position_embeddings: 128, layer_norm_eps: 1e-5, use_parallel_residual: true, tie_word_embeddings: false,
    bos_token_id: 256, eos_token_id: 257, pad_token_id: 258, torch_dtype: 'float32', ...overrides,
  };
}

/** Writes a model folder with initialised weights; returns its path. */
export function writeByteModel(dir: string, configJson: Record<string, unknown> = tinyConfigJson(), seed = 1): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson, null, 2));
  const config = parseConfig(configJson, path.join(dir, 'config.json'));
  const random = rng(seed);
  const tensors: Record<string, TensorToWrite> = {};
  for (const s of modelParams(config)) {
    const n = numelOf(s.shape);
    const data = s.role === 'norm' ? new Float32Array(n).fill(1) : s.role === 'bias' ? new Float32Array(n) : Float32Array.from({ length: n }, () => INITIALIZER_RANGE * random.normal());
    tensors[s.name] = { dtype: 'F32', shape: s.shape, data };
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeByteTokenizer(dir);
  return dir;
}

/** Writes n prompt/response records in HH's turn format ("what is i plus i % 5?"), JSONL, to file; returns its path. */
export function writeAdditionData(file: string, n: number): string {
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => JSON.stringify({
    prompt: `\n\nHuman: what is ${i} plus ${i % 5}?\n\nAssistant:`, response: ` It is ${i + (i % 5)}.`,
  })).join('\n') + '\n');
  return file;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const [dir, like] = process.argv.slice(2);
  if (!dir) { console.error('usage: tsx test/support/byte_model.ts DIR [config.json]'); process.exit(2); }
  writeByteModel(dir, like ? JSON.parse(fs.readFileSync(like, 'utf8')) : tinyConfigJson());
  console.log(`wrote ${dir}`);
}
