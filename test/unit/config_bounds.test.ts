// No GPU: config.json sizes are bounded before anything is allocated or looped over, products against the host
// budget; the config file must stay inside its folder; ModelWeights checks tensors against a device's buffer limits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_LIMITS, ConfigError, HOST_BUDGET_BYTES, MAX_TENSOR_BYTES, loadConfig, parseConfig } from '../../models/config.ts';
import { gptNeoxParams } from '../../models/gpt_neox_params.ts';
import { ModelWeights, WeightsError, tooLargeForDevice } from '../../models/weights.ts';

const HF = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
const json = (model: string) => JSON.parse(fs.readFileSync(path.join(HF, model, 'config.json'), 'utf8')) as Record<string, unknown>;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-config-bounds-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function fails(cfg: Record<string, unknown>, ...needles: string[]): ConfigError {
  const start = performance.now();
  try {
    parseConfig(cfg, 'x/config.json');
  } catch (e) {
    assert.instance(e, ConfigError);
    for (const n of ['x/config.json', ...needles]) assert.ok((e as Error).message.includes(n), `${(e as Error).message} should contain ${n}`);
    assert.ok(performance.now() - start < 1000, 'refused at once');
    return e as ConfigError;
  }
  assert.unreachable(`expected a ConfigError with ${needles.join(", ")}`);
  throw new Error("unreachable");
}

test('every size is a positive integer within its limit; the message names the file, the field, the value and the limit', () => {
  for (const v of [1e6, 1e12, 2 ** 53, 1e308]) fails({ ...json('gpt_neox'), num_hidden_layers: v }, 'num_hidden_layers', String(v).slice(0, 6), '1024');
  fails({ ...json('gpt_neox'), hidden_size: 131072, num_attention_heads: 4 }, 'hidden_size = 131072', String(CONFIG_LIMITS.hidden_size));
  fails({ ...json('gpt_neox'), vocab_size: (1 << 22) + 1 }, 'vocab_size', String(1 << 22));
  fails({ ...json('gpt_neox'), intermediate_size: 2 ** 21 }, 'intermediate_size', String(1 << 20));
  fails({ ...json('gpt_neox'), max_position_embeddings: 2 ** 25 }, 'max_position_embeddings', String(1 << 24));
  fails({ ...json('mistral'), num_key_value_heads: 2048 }, 'num_key_value_heads', '1024');
  fails({ ...json('mistral'), head_dim: 8192 }, 'head_dim', '4096');
  fails({ ...json('mistral'), sliding_window: 2 ** 30 }, 'sliding_window', String(1 << 24));
  fails({ ...json('gpt_neox'), eos_token_id: 2 ** 40 }, 'eos_token_id', String(2 ** 31 - 1));
  fails({ ...json('gpt_neox'), num_hidden_layers: -3 }, 'num_hidden_layers = -3', 'positive integer');
  fails({ ...json('gpt_neox'), num_hidden_layers: 2.5 }, 'num_hidden_layers = 2.5', 'positive integer');
  fails({ ...json('gpt_neox'), num_hidden_layers: '2' }, 'num_hidden_layers = "2"', 'positive integer');
});

test('products: the largest tensor against one host buffer, all weights against the host budget', () => {
  // every size within its limit, but the embedding [2^22, 2^16] is 2^40 bytes as f32
  const e = fails({ ...json('gpt_neox'), vocab_size: 1 << 22, hidden_size: 1 << 16, num_attention_heads: 1024 }, 'gpt_neox.embed_in.weight', String(MAX_TENSOR_BYTES));
  assert.is(e.field, null);
  // 1024 layers of [16384, 16384]-sized matrices: each tensor fits, the sum is over 2^40 bytes
  fails({ ...json('gpt_neox'), num_hidden_layers: 1024, hidden_size: 16384, num_attention_heads: 128, intermediate_size: 16384 }, String(HOST_BUDGET_BYTES), 'host budget');
});

test('loadConfig: duplicate keys refused, a config.json linking out of the folder refused', () => {
  const dup = path.join(tmp, 'dup');
  fs.mkdirSync(dup);
  fs.writeFileSync(path.join(dup, 'config.json'), JSON.stringify(json('gpt_neox')).replace(/\}$/, ',"num_hidden_layers":1000000}'));
  assert.throws(() => loadConfig(dup), (e: Error) => e instanceof ConfigError && e.message.includes('duplicate key') && e.message.includes('num_hidden_layers'));
  const out = path.join(tmp, 'out');
  fs.mkdirSync(out);
  fs.symlinkSync(path.join(HF, 'gpt_neox', 'config.json'), path.join(out, 'config.json'));
  assert.throws(() => loadConfig(out), (e: Error) => e instanceof ConfigError && e.message.includes('outside the model folder'));
});

test('ModelWeights.open with device limits names every tensor over one buffer', () => {
  const dir = path.join(HF, 'gpt_neox');
  const specs = gptNeoxParams(loadConfig(dir));
  // the largest fixture tensors are [256, 64] f32 = 65536 bytes
  const limits = { maxBufferSize: 65535 };
  const over = tooLargeForDevice(specs, limits);
  assert.ok(over.length > 0 && over.every((l) => l.includes('maxBufferSize (65535 bytes)')), over.join('\n'));
  assert.ok(over.some((l) => l.startsWith('gpt_neox.layers.0.mlp.dense_h_to_4h.weight [256, 64]: 65536 bytes as f32')), over.join('\n'));
  assert.throws(() => ModelWeights.open(dir, specs, { limits }), (e: Error) => e instanceof WeightsError && e.tooLarge.length === over.length && e.message.includes('too large for one device buffer'));
  ModelWeights.open(dir, specs, { limits: { maxBufferSize: 1 << 20 } }).close();
});

test.run();
