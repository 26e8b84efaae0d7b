// config.json parsing, the GPT-NeoX / Mistral / reward parameter tables against the fixture files,
// and strict weight loading. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { shapeString } from '../../engine/tensor.ts';
import type { ParamSpec } from '../../engine/params.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/safetensors.ts';
import { f32ToBf16, f32ToF16, bf16ToF32 } from '../../kernels/dtype.ts';
import { ConfigError, loadConfig, modelParams, parseConfig, rewardParams, type ModelConfig } from '../../models/config.ts';
import { gptNeoxParams } from '../../models/gpt_neox_params.ts';
import { mistralParams } from '../../models/mistral_params.ts';
import { ModelWeights, WeightsError, loadWeights } from '../../models/weights.ts';

const HF = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
const MISTRAL_7B = fileURLToPath(new URL('../../../shared/data/tokenizers/mistral-7b-v0.1/', import.meta.url));
const has7B = fs.existsSync(MISTRAL_7B);
if (!has7B) console.log(`model_config: skipping the Mistral-7B config and index tests: ${MISTRAL_7B} is absent`);

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-model-config-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
let counter = 0;
const freshDir = () => { const d = path.join(tmpDir, String(counter++)); fs.mkdirSync(d); return d; };

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
const neoxJson = () => readJson(path.join(HF, 'gpt_neox/config.json'));
const mistralJson = () => readJson(path.join(HF, 'mistral/config.json'));

/** Asserts that parsing `json` throws a ConfigError naming the file, `field` and `value`. */
function configFails(json: Record<string, unknown>, field: string, value: unknown): void {
  try {
    parseConfig(json, 'some/config.json');
  } catch (e) {
    assert.instance(e, ConfigError);
    const err = e as ConfigError;
    assert.is(err.file, 'some/config.json');
    assert.is(err.field, field);
    assert.equal(err.value, value);
    for (const part of ['some/config.json', field, JSON.stringify(value) ?? 'undefined']) assert.ok(err.message.includes(part), `'${err.message}' should mention ${part}`);
    return;
  }
  assert.unreachable(`expected a ConfigError for ${field} = ${JSON.stringify(value)}`);
}

/** The names and shapes a safetensors file holds, sorted: what a parameter table must equal. */
function fileTable(file: string): string[] {
  const f = SafetensorsFile.open(file);
  try { return f.names().map((n) => `${n} ${shapeString(f.info(n).shape)}`).sort(); } finally { f.close(); }
}
const table = (specs: ParamSpec[]) => specs.map((s) => `${s.name} ${shapeString(s.shape)}`).sort();

// ---------------------------------------------------------------------------------------------
// config.json

test('GPT-NeoX: transformers 5 and classic layouts parse to the same config', () => {
  const expected: ModelConfig = {
    modelType: 'gpt_neox', head: 'lm', vocabSize: 128, hidden: 64, layers: 2, heads: 4, kvHeads: 4, headDim: 16,
    intermediate: 256, rotaryDims: 4, ropeTheta: 10000, eps: 1e-5, maxPositions: 256, slidingWindow: null,
    parallelResidual: true, tieWordEmbeddings: false, hiddenAct: 'gelu', attentionBias: true,
    bosTokenId: 0, eosTokenId: 0, padTokenId: null,
  };
  assert.equal(loadConfig(path.join(HF, 'gpt_neox')), expected);
  assert.equal(loadConfig(path.join(HF, 'gpt_neox/config.classic.json')), expected);
  assert.equal(loadConfig(path.join(HF, 'irft/policy/config.classic.json')), loadConfig(path.join(HF, 'irft/policy')));
});

test('Mistral: transformers 5 and classic layouts parse to the same config', () => {
  const expected: ModelConfig = {
    modelType: 'mistral', head: 'lm', vocabSize: 128, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16,
    intermediate: 192, rotaryDims: 16, ropeTheta: 10000, eps: 1e-5, maxPositions: 256, slidingWindow: 8,
    parallelResidual: false, tieWordEmbeddings: false, hiddenAct: 'silu', attentionBias: false,
    bosTokenId: 1, eosTokenId: 2, padTokenId: null,
  };
  assert.equal(loadConfig(path.join(HF, 'mistral')), expected);
  assert.equal(loadConfig(path.join(HF, 'mistral/config.classic.json')), expected);
});

test('reward config: a one-label sequence classifier with its pad token', () => {
  const c = loadConfig(path.join(HF, 'reward'));
  assert.is(c.head, 'score');
  assert.is(c.padTokenId, 0);
  assert.equal({ ...c, head: 'lm', padTokenId: null }, loadConfig(path.join(HF, 'gpt_neox')));
});

test('options that change the model parse: sequential residual, no attention bias, head_dim, no window, eos list', () => {
  const neox = parseConfig({ ...neoxJson(), use_parallel_residual: false, attention_bias: false, rope_parameters: { rope_type: 'default', rope_theta: 500, partial_rotary_factor: 0.5 } }, 'c.json');
  assert.equal([neox.parallelResidual, neox.attentionBias, neox.ropeTheta, neox.rotaryDims], [false, false, 500, 8]);
  const m = parseConfig({ ...mistralJson(), head_dim: 32, sliding_window: null, eos_token_id: [2, 7] }, 'c.json');
  assert.equal([m.headDim, m.rotaryDims, m.slidingWindow, m.eosTokenId], [32, 32, null, [2, 7]]);
  const { sliding_window: _, num_key_value_heads: __, ...bare } = mistralJson();
  const defaults = parseConfig(bare, 'c.json');
  assert.equal([defaults.slidingWindow, defaults.kvHeads], [4096, 4]); // transformers' defaults
});

test('unknown or unimplemented options are ConfigErrors naming the file, the field and the value', () => {
  configFails({ ...neoxJson(), model_type: 'llama' }, 'model_type', 'llama');
  configFails({ ...neoxJson(), rope_parameters: { rope_type: 'linear', rope_theta: 10000, factor: 2 } }, 'rope_parameters.rope_type', 'linear');
  configFails({ ...mistralJson(), rope_parameters: { rope_type: 'default', rope_theta: 10000, factor: 2 } }, 'rope_parameters.factor', 2);
  configFails({ ...mistralJson(), rope_scaling: { type: 'dynamic', factor: 2 } }, 'rope_scaling', { type: 'dynamic', factor: 2 });
  configFails({ ...mistralJson(), rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } }, 'rope_parameters.partial_rotary_factor', 0.5);
  configFails({ ...neoxJson(), hidden_act: 'gelu_new' }, 'hidden_act', 'gelu_new');
  configFails({ ...mistralJson(), hidden_act: 'gelu' }, 'hidden_act', 'gelu');
  configFails({ ...neoxJson(), num_attention_heads: 5 }, 'num_attention_heads', 5);
  configFails({ ...neoxJson(), head_dim: 32 }, 'head_dim', 32);
  configFails({ ...mistralJson(), num_key_value_heads: 3 }, 'num_key_value_heads', 3);
  configFails({ ...mistralJson(), hidden_size: 64.5 }, 'hidden_size', 64.5);
  configFails({ ...neoxJson(), vocab_size: undefined }, 'vocab_size', undefined);
  configFails({ ...neoxJson(), use_parallel_residual: 'yes' }, 'use_parallel_residual', 'yes');
  configFails({ ...mistralJson(), sliding_window: 0 }, 'sliding_window', 0);
  const { rope_parameters: _, ...classicNeox } = neoxJson();
  configFails({ ...classicNeox, rotary_pct: 0.3125 }, 'rotary_pct', 0.3125); // 5 of 16 dims: rotate-half needs an even width
  configFails({ ...neoxJson(), rotary_pct: 0.5 }, 'rotary_pct', 0.5); // disagrees with rope_parameters' 0.25
  configFails({ ...neoxJson(), architectures: ['GPTNeoXForSequenceClassification'], num_labels: 2 }, 'num_labels', 2);
  configFails({ ...neoxJson(), architectures: ['GPTNeoXForTokenClassification'] }, 'architectures', ['GPTNeoXForTokenClassification']);
});

test('loadConfig names the file when it is missing or not JSON', () => {
  const dir = freshDir();
  assert.throws(() => loadConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(path.join(dir, 'config.json')) && e.message.includes('cannot read'));
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "gpt_neox",');
  assert.throws(() => loadConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(path.join(dir, 'config.json')) && e.message.includes('not valid JSON'));
});

test('an integer field written as a float (64.0, 2e1) is refused naming the file, the field and the token; float fields may be', () => {
  const dir = freshDir();
  const text = fs.readFileSync(path.join(HF, 'gpt_neox', 'config.json'), 'utf8');
  const config = JSON.parse(text) as Record<string, unknown>;
  const write = (edit: (t: string) => string) => fs.writeFileSync(path.join(dir, 'config.json'), edit(JSON.stringify(config, null, 2)));
  write((t) => t.replace(/"hidden_size": (\d+)/, '"hidden_size": $1.0'));
  assert.throws(() => loadConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(path.join(dir, 'config.json'))
    && e.message.includes('hidden_size') && /written without a fraction or exponent \(the file says \d+\.0\)/.test(e.message), 'hidden_size 64.0');
  write((t) => t.replace(/"eos_token_id": (\d+)/, '"eos_token_id": $1e0'));
  assert.throws(() => loadConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes('eos_token_id') && e.message.includes('e0'), 'eos_token_id 0e0');
  write((t) => t.replace(/"layer_norm_eps": [^,\n]+/, '"layer_norm_eps": 1.0e-5').replace(/"rotary_emb_base": (\d+)/, '"rotary_emb_base": $1.0'));
  assert.equal(loadConfig(dir), loadConfig(path.join(HF, 'gpt_neox')), 'floats where transformers reads floats');
});

if (has7B) {
  test('the real Mistral-7B-v0.1 config parses', () => {
    const c = loadConfig(MISTRAL_7B);
    assert.equal(c, {
      modelType: 'mistral', head: 'lm', vocabSize: 32000, hidden: 4096, layers: 32, heads: 32, kvHeads: 8, headDim: 128,
      intermediate: 14336, rotaryDims: 128, ropeTheta: 10000, eps: 1e-5, maxPositions: 32768, slidingWindow: 4096,
      parallelResidual: false, tieWordEmbeddings: false, hiddenAct: 'silu', attentionBias: false,
      bosTokenId: 1, eosTokenId: 2, padTokenId: null,
    });
  });

  test('mistralParams(7B config) names exactly the tensors of the real 7B shard index', () => {
    const index = readJson(path.join(MISTRAL_7B, 'model.safetensors.index.json'));
    const names = Object.keys(index.weight_map as object).sort();
    assert.is(names.length, 291);
    assert.equal(mistralParams(loadConfig(MISTRAL_7B)).map((s) => s.name).sort(), names);
  });
}

// ---------------------------------------------------------------------------------------------
// Parameter tables against the fixture files

test('gptNeoxParams equals the names and shapes in gpt_neox/model.safetensors and both irft models', () => {
  assert.equal(table(gptNeoxParams(loadConfig(path.join(HF, 'gpt_neox')))), fileTable(path.join(HF, 'gpt_neox/model.safetensors')));
  for (const which of ['policy', 'reference']) {
    const dir = path.join(HF, 'irft', which);
    assert.equal(table(modelParams(loadConfig(dir))), fileTable(path.join(dir, 'model.safetensors')));
  }
});

test('mistralParams equals the names and shapes in mistral/model.safetensors (GQA: k, v are [32, 64])', () => {
  const specs = mistralParams(loadConfig(path.join(HF, 'mistral')));
  assert.equal(table(specs), fileTable(path.join(HF, 'mistral/model.safetensors')));
  assert.equal(specs.find((s) => s.name === 'model.layers.0.self_attn.k_proj.weight')!.shape, [32, 64]);
});

test('rewardParams: the gpt_neox trunk and score.weight [1, 64], no embed_out, as in reward/model.safetensors', () => {
  const cfg = loadConfig(path.join(HF, 'reward'));
  const specs = rewardParams(cfg);
  assert.equal(table(specs), fileTable(path.join(HF, 'reward/model.safetensors')));
  assert.equal(table(modelParams(cfg)), table(specs));
  assert.equal(specs.at(-1), { name: 'score.weight', shape: [1, 64], role: 'head', decay: true, trainable: true, adapter: false });
  assert.not.ok(specs.some((s) => s.name === 'embed_out.weight'));
});

test('tables follow the config: tied heads are absent, no attention bias drops two biases per layer, head_dim sets q/o widths', () => {
  const tiedNeox = gptNeoxParams(parseConfig({ ...neoxJson(), tie_word_embeddings: true }, 'c.json'));
  assert.is(tiedNeox.at(-1)!.name, 'gpt_neox.final_layer_norm.bias');
  const tiedMistral = mistralParams(parseConfig({ ...mistralJson(), tie_word_embeddings: true }, 'c.json'));
  assert.is(tiedMistral.at(-1)!.name, 'model.norm.weight');
  const noBias = gptNeoxParams(parseConfig({ ...neoxJson(), attention_bias: false }, 'c.json'));
  assert.is(noBias.length, gptNeoxParams(loadConfig(path.join(HF, 'gpt_neox'))).length - 2 * 2);
  assert.not.ok(noBias.some((s) => s.name.endsWith('query_key_value.bias') || s.name.endsWith('attention.dense.bias')));
  const wide = mistralParams(parseConfig({ ...mistralJson(), head_dim: 32 }, 'c.json'));
  const shape = (n: string) => wide.find((s) => s.name === `model.layers.0.self_attn.${n}.weight`)!.shape;
  assert.equal([shape('q_proj'), shape('k_proj'), shape('o_proj')], [[128, 64], [64, 64], [64, 128]]);
});

// ---------------------------------------------------------------------------------------------
// Weights

/** A tiny Mistral (hidden 8, 1 layer, vocab 16) config and seeded values for each of its tensors. */
const tinyMistral = parseConfig({ ...mistralJson(), hidden_size: 8, head_dim: 4, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 12, num_hidden_layers: 1, vocab_size: 16 }, 'tiny.json');
function tinyTensors(specs: ParamSpec[]): Record<string, TensorToWrite & { data: Float32Array }> {
  let k = 0;
  return Object.fromEntries(specs.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    return [s.name, { shape: s.shape, data: Float32Array.from({ length: n }, () => Math.sin(++k) * 0.37) }];
  }));
}

test('loadWeights reads the fixture exactly, in table order', () => {
  const dir = path.join(HF, 'gpt_neox');
  const specs = gptNeoxParams(loadConfig(dir));
  const weights = loadWeights(dir, specs);
  assert.equal([...weights.keys()], specs.map((s) => s.name));
  const f = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    for (const s of specs) assert.equal(weights.get(s.name), f.read(s.name), s.name);
  } finally { f.close(); }
});

test('one WeightsError lists the missing, the unexpected and the wrongly shaped or typed tensors and names the file', () => {
  const specs = mistralParams(tinyMistral);
  const tensors: Record<string, TensorToWrite> = tinyTensors(specs);
  delete tensors['model.norm.weight'];
  tensors['model.layers.0.self_attn.q_bias'] = { shape: [8], data: new Float32Array(8) };
  tensors['model.layers.0.mlp.up_proj.weight'] = { shape: [8, 12], data: new Float32Array(96) };
  tensors['model.layers.0.input_layernorm.weight'] = { shape: [8], data: new Int32Array(8) };
  const dir = freshDir();
  const file = path.join(dir, 'model.safetensors');
  writeSafetensors(file, tensors);
  try {
    ModelWeights.open(dir, specs);
    assert.unreachable('expected a WeightsError');
  } catch (e) {
    assert.instance(e, WeightsError);
    const err = e as WeightsError;
    assert.equal(err.missing, ['model.norm.weight [8]']);
    assert.equal(err.unexpected, [`model.layers.0.self_attn.q_bias [8] in ${file}`]);
    assert.equal(err.misshaped, [
      `model.layers.0.mlp.up_proj.weight: [8, 12] in ${file}, the table wants [12, 8]`,
      `model.layers.0.input_layernorm.weight: dtype I32 in ${file}, wants one of F32, F16, BF16`,
    ]);
    assert.ok(err.message.startsWith(`${file}: the weights do not match the parameter table`));
    for (const line of [...err.missing, ...err.unexpected, ...err.misshaped]) assert.ok(err.message.includes(line), line);
  }
});

test('rotary inv_freq and GPT-NeoX mask buffers are ignorable extras; other buffers are not', () => {
  const specs = gptNeoxParams(parseConfig({ ...neoxJson(), hidden_size: 16, num_attention_heads: 2, intermediate_size: 8, num_hidden_layers: 1, vocab_size: 4 }, 'tiny.json'));
  const tensors: Record<string, TensorToWrite> = tinyTensors(specs);
  tensors['gpt_neox.layers.0.attention.rotary_emb.inv_freq'] = { shape: [2], data: new Float32Array(2) };
  tensors['gpt_neox.layers.0.attention.bias'] = { shape: [1, 1, 4, 4], data: new Uint8Array(16) };
  tensors['gpt_neox.layers.0.attention.masked_bias'] = { shape: [], data: new Float32Array(1) };
  const dir = freshDir();
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  assert.is(loadWeights(dir, specs).size, specs.length);
  tensors['gpt_neox.layers.0.mlp.rotary_emb.inv_freq'] = { shape: [2], data: new Float32Array(2) };
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  assert.throws(() => loadWeights(dir, specs), (e: Error) => e instanceof WeightsError && e.unexpected.length === 1 && e.unexpected[0]!.startsWith('gpt_neox.layers.0.mlp.rotary_emb.inv_freq'));
});

test('BF16 shards behind an index: f32 values are the bf16 values, read16 returns the stored bits or converts', () => {
  const specs = mistralParams(tinyMistral);
  const tensors = tinyTensors(specs);
  const names = Object.keys(tensors);
  const half = Math.ceil(names.length / 2);
  const dir = freshDir();
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const shardFile = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(dir, shardFile), Object.fromEntries(shard.map((n) => [n, { ...tensors[n]!, dtype: 'BF16' as const }])));
    for (const n of shard) weightMap[n] = shardFile;
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));

  const loaded = loadWeights(dir, specs);
  const name = 'model.layers.0.mlp.down_proj.weight';
  const bits = f32ToBf16(tensors[name]!.data);
  assert.equal(loaded.get(name), bf16ToF32(bits));
  assert.ok(loaded.get(name)![3] !== tensors[name]!.data[3], 'bf16 rounding must show (the test would pass on f32 data otherwise)');
  const weights = ModelWeights.open(dir, specs);
  try {
    assert.is(weights.dtypeOf(name), 'bf16');
    assert.equal(weights.read16(name, 'bf16'), bits);
    assert.equal(weights.read16(name, 'f16'), f32ToF16(bf16ToF32(bits)));
    assert.equal(weights.readRaw(name).bytes, new Uint8Array(bits.buffer));
  } finally { weights.close(); }
});

test('read16 converts f32 weights with round to nearest even', () => {
  const dir = path.join(HF, 'mistral');
  const weights = ModelWeights.open(dir, mistralParams(loadConfig(dir)));
  try {
    const name = 'model.layers.1.self_attn.v_proj.weight';
    assert.is(weights.dtypeOf(name), 'f32');
    assert.equal(weights.read16(name, 'bf16'), f32ToBf16(weights.read(name)));
    assert.equal(weights.read16(name, 'f16'), f32ToF16(weights.read(name)));
  } finally { weights.close(); }
});

test.run();
