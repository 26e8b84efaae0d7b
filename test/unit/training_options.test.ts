// No GPU: the training options' parsing (sizes, --resume alone, the --config file, the cross-option checks) and the
// sharded safetensors writer, read back through SafetensorsFolder as a model folder.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UsageError } from '../../bin/options.ts';
import { checkTrainingOptions, configFileArgs, expandOptionalResume, parseByteSize, TRAINING_OPTIONS } from '../../bin/training_options.ts';
import { INDEX_FILE, planShards, SafetensorsFolder, writeShardedSafetensors, type TensorToWrite } from '../../engine/safetensors.ts';
import type { TrainingOptions } from '../../train/run_config.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-training-options-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('sizes: transformers units, GB = 10^9 and GiB = 2^30; nonsense is null', () => {
  assert.is(parseByteSize('5GB'), 5e9);
  assert.is(parseByteSize('200MB'), 2e8);
  assert.is(parseByteSize('1GiB'), 2 ** 30);
  assert.is(parseByteSize('1234'), 1234);
  assert.is(parseByteSize('0.5KB'), 500);
  for (const bad of ['', 'GB', '-1GB', '5 TB', '0']) assert.is(parseByteSize(bad), null, bad);
});

test('--resume alone reads as --resume latest; with a folder it is kept', () => {
  assert.equal(expandOptionalResume(['--out', 'o', '--resume']), ['--out', 'o', '--resume', 'latest']);
  assert.equal(expandOptionalResume(['--resume', '--out', 'o']), ['--resume', 'latest', '--out', 'o']);
  assert.equal(expandOptionalResume(['--resume', 'o/checkpoint-4']), ['--resume', 'o/checkpoint-4']);
});

test('--config: keys are flag names, booleans are flags, unknown keys are refused by name', () => {
  const file = path.join(tmp, 'run.json');
  fs.writeFileSync(file, JSON.stringify({ 'max-steps': 30, lr: 1e-4, 'skip-bad-lines': true, 'time-kernels': false, schedule: 'cosine' }));
  assert.equal(configFileArgs(file, TRAINING_OPTIONS), ['--max-steps=30', '--lr=0.0001', '--skip-bad-lines', '--schedule=cosine']);
  fs.writeFileSync(file, JSON.stringify({ 'max_steps': 30 }));
  assert.throws(() => configFileArgs(file, TRAINING_OPTIONS), (e: Error) => e instanceof UsageError && /unknown key 'max_steps'/.test(e.message));
  fs.writeFileSync(file, JSON.stringify({ 'skip-bad-lines': 'yes' }));
  assert.throws(() => configFileArgs(file, TRAINING_OPTIONS), /must be true or false/);
  fs.writeFileSync(file, '[1]');
  assert.throws(() => configFileArgs(file, TRAINING_OPTIONS), /JSON object/);
});

test('cross-option checks: warmup, constant schedule, 16-bit without LoRA, prompt length, eval without data', () => {
  const base = Object.fromEntries(Object.entries(TRAINING_OPTIONS).map(([k, o]) => [k, k === 'model' || k === 'data' || k === 'out' ? 'x' : o.check(undefined, `--${k}`)])) as unknown as TrainingOptions;
  checkTrainingOptions(base);
  const refused = (patch: Partial<TrainingOptions>, pattern: RegExp) =>
    assert.throws(() => checkTrainingOptions({ ...base, ...patch }), (e: Error) => e instanceof UsageError && pattern.test(e.message), JSON.stringify(patch));
  refused({ warmup: 2.5 }, /must be an integer/);
  refused({ schedule: 'constant', warmup: 3 }, /constant_with_warmup/);
  refused({ 'weights-dtype': 'bf16' }, /needs --lora-r/);
  refused({ 'max-prompt-length': 600 }, /below --max-length/);
  refused({ 'eval-steps': 10 }, /needs --eval-data/);
  refused({ 'adam-beta2': 1 }, /below 1/);
  refused({ resume: path.join(tmp, 'nowhere') }, /no such checkpoint folder/);
  checkTrainingOptions({ ...base, 'weights-dtype': 'bf16', 'lora-r': 8, warmup: 0.1, schedule: 'cosine' });
});

test('sharded writing: shards of at most the limit in order, an index as transformers writes it, read back whole', () => {
  const t = (n: number, v: number): TensorToWrite => ({ dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) });
  const tensors = { a: t(100, 1), b: t(100, 2), big: t(400, 3), c: t(10, 4) }; // 400, 400, 1600, 40 bytes
  const plan = planShards(tensors, 1000);
  assert.equal(plan.shards.map((s) => Object.keys(s.tensors)), [['a', 'b'], ['big'], ['c']]);
  assert.equal(plan.shards.map((s) => s.file), ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
  assert.is(plan.index!.metadata.total_size, 2440);
  assert.is(plan.index!.weight_map.big, 'model-00002-of-00003.safetensors');
  assert.is(planShards(tensors, 5e9).index, null);
  assert.equal(planShards(tensors, 5e9).shards.map((s) => s.file), ['model.safetensors']);

  const dir = path.join(tmp, 'sharded');
  assert.equal(writeShardedSafetensors(dir, tensors, 1000), [...plan.shards.map((s) => s.file), INDEX_FILE]);
  const folder = SafetensorsFolder.open(dir);
  try {
    assert.equal(folder.names().sort(), ['a', 'b', 'big', 'c']);
    assert.is((folder.read('big') as Float32Array)[399], 3);
    assert.is((folder.read('c') as Float32Array)[0], 4);
  } finally {
    folder.close();
  }
  assert.equal(writeShardedSafetensors(path.join(tmp, 'single'), tensors, 5e9), ['model.safetensors']);
});

test.run();
