// juice inspect: parameter counts against the fixture files, the memory plan and FLOP formulas,
// the real Mistral-7B config when ../shared/data is present. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { inspect } from '../../bin/commands/inspect.ts';
import { memoryPlan, param } from '../../engine/params.ts';
import { loadConfig } from '../../models/config.ts';
import { describeModel, inspectModel } from '../../models/inspect.ts';
import { loraParamSpecs } from '../../models/lora.ts';

const HF = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
const MISTRAL_7B = fileURLToPath(new URL('../../../shared/data/tokenizers/mistral-7b-v0.1/', import.meta.url));
const has7B = fs.existsSync(MISTRAL_7B);
if (!has7B) console.log(`inspect: skipping the Mistral-7B test: ${MISTRAL_7B} is absent`);

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-inspect-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

/** Sum of the element counts of every tensor in a safetensors file. */
function fileElements(file: string): number {
  const f = SafetensorsFile.open(file);
  try { return f.names().reduce((n, name) => n + f.info(name).shape.reduce((a, b) => a * b, 1), 0); } finally { f.close(); }
}

test('parameter counts equal the tensor sizes in the fixture files, and the weights are reported as matching', () => {
  for (const kind of ['gpt_neox', 'mistral', 'reward', 'irft/policy']) {
    const dir = path.join(HF, kind);
    const s = describeModel(dir);
    const file = path.join(dir, 'model.safetensors');
    assert.is(s.parameters, fileElements(file), kind);
    assert.equal(s.weights, { path: file, parametersByDtype: { f32: s.parameters }, problem: null }, kind);
  }
});

test('GPT-NeoX fixture: memory plan, activations and FLOPs by the stated formulas', () => {
  const s = describeModel(path.join(HF, 'gpt_neox'), { sequenceLength: 16 });
  // embed 128*64, per layer 4*64 (norms) + 192*64+192 + 64*64+64 + 256*64+256 + 64*256+64, final norm 128, head 128*64
  const perLayer = 4 * 64 + 192 * 64 + 192 + 64 * 64 + 64 + 256 * 64 + 256 + 64 * 256 + 64;
  const N = 128 * 64 + 2 * perLayer + 128 + 128 * 64;
  assert.is(s.parameters, N);
  assert.is(s.embeddingParameters, 128 * 64);
  assert.equal(s.memory, {
    weightsF32: 4 * N, weights16: 2 * N, gradientsF32: 4 * N, adamwF32: 8 * N,
    activationsPerToken: 4 * (2 * (7 * 64 + 2 * 256 + 4 + 4) + 2 * 64 + 2 + 128),
  });
  const forward = 2 * (N - 128 * 64) + 2 * 2 * 2 * 16 * 64;
  assert.equal(s.flops, { sequenceLength: 16, forwardPerToken: forward, trainingPerToken: 3 * forward });
});

test('memoryPlan: gradients and AdamW states for trainable tensors only, frozen matrices in 16 bits, moments sharded by shardOf', () => {
  const specs = [
    param('w', [130], 'weight'), param('frozen.w', [10, 10], 'weight', { trainable: false }),
    param('frozen.norm', [6], 'norm', { trainable: false }), param('b', [7], 'bias'),
  ];
  assert.equal(memoryPlan(specs), {
    parameters: 243, trainableParameters: 137, weightBytes: 4 * 243, weightBytesByDtype: { f32: 4 * 243 },
    gradientBytes: 4 * 137, optimizerBytes: 8 * 137, shards: 1,
  });
  // bf16: only the frozen matrix is 16-bit. 3 shards: shardOf gives w 44 of 130 and b 4 of 7 to shard 0.
  assert.equal(memoryPlan(specs, { weightDtype: 'bf16', shards: 3 }), {
    parameters: 243, trainableParameters: 137, weightBytes: 4 * 143 + 2 * 100, weightBytesByDtype: { f32: 4 * 143, bf16: 2 * 100 },
    gradientBytes: 4 * 137, optimizerBytes: 8 * (44 + 4), shards: 3,
  });
  assert.throws(() => memoryPlan(specs, { shards: 0 }), /shardCount must be a positive integer/);
});

test('LoRA plan, GPT-NeoX fixture by hand: PEFT names and shapes, frozen base, f32 adapters, grads and AdamW', () => {
  const dir = path.join(HF, 'gpt_neox');
  const config = loadConfig(dir);
  const specs = loraParamSpecs(config, { r: 8, targets: ['query_key_value', 'embed_out'] });
  assert.equal(specs.slice(0, 2).map((s) => [s.name, s.shape, s.trainable, s.adapter]), [
    ['base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight', [8, 64], true, true],
    ['base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_B.weight', [192, 8], true, true],
  ]);
  assert.equal(specs.slice(-2).map((s) => [s.name, s.shape]), [
    ['base_model.model.embed_out.lora_A.weight', [8, 64]], ['base_model.model.embed_out.lora_B.weight', [128, 8]],
  ]);
  assert.is(specs.length, 2 * 3);
  // all-linear: per layer qkv (64 + 192) + dense (64 + 64) + h_to_4h (64 + 256) + 4h_to_h (256 + 64) = 1024 per rank, no head.
  const s = describeModel(dir, { loraR: 4, loraTargets: 'all-linear' });
  const A = 2 * 1024 * 4;
  const matrices = 128 * 64 + 2 * (192 * 64 + 64 * 64 + 256 * 64 + 64 * 256) + 128 * 64;
  const vectors = 2 * (4 * 64 + 192 + 64 + 256 + 64) + 2 * 64;
  assert.is(matrices + vectors, s.parameters);
  assert.equal(s.lora, {
    r: 4, targets: ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h'], adapterParameters: A,
    memory: { baseF32: 4 * s.parameters, base16: 2 * matrices + 4 * vectors, adaptersF32: 4 * A, gradientsF32: 4 * A, adamwF32: 8 * A },
  });
  // PEFT's default for gpt_neox: query_key_value only, 2 layers of (64 + 192) per rank.
  assert.is(describeModel(dir, { loraR: 8 }).lora!.adapterParameters, 2 * 256 * 8);
  assert.is(describeModel(dir).lora, null);
  assert.throws(() => loraParamSpecs(config, { r: 8, targets: ['q_proj'] }), /'q_proj' are no gpt_neox module; known: query_key_value/);
  assert.throws(() => loraParamSpecs(config, { r: 0 }), /rank r must be a positive integer/);
});

test('LoRA plan, Mistral fixture by hand: GQA-narrow k and v, the head target, the text report', () => {
  const dir = path.join(HF, 'mistral');
  const config = loadConfig(dir);
  const specs = loraParamSpecs(config, { r: 2, targets: ['k_proj', 'lm_head'] });
  assert.equal(specs.map((s) => [s.name, s.shape]), [
    ['base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', [2, 64]], ['base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight', [32, 2]],
    ['base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight', [2, 64]], ['base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight', [32, 2]],
    ['base_model.model.lm_head.lora_A.weight', [2, 64]], ['base_model.model.lm_head.lora_B.weight', [128, 2]],
  ]);
  // all-linear per layer: q (64 + 64) + k, v (64 + 32 each) + o (64 + 64) + gate, up (64 + 192 each) + down (192 + 64) = 1216 per rank.
  const s = describeModel(dir, { loraR: 8, loraTargets: 'all-linear' });
  const A = 2 * 1216 * 8;
  const matrices = 2 * 128 * 64 + 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 192 * 64), vectors = 2 * 2 * 64 + 64;
  assert.is(matrices + vectors, s.parameters);
  assert.equal(s.lora!.memory, { baseF32: 4 * s.parameters, base16: 2 * matrices + 4 * vectors, adaptersF32: 4 * A, gradientsF32: 4 * A, adamwF32: 8 * A });
  // PEFT's default for mistral: q_proj and v_proj, 2 layers of (64 + 64) + (64 + 32) per rank.
  assert.is(describeModel(dir, { loraR: 8 }).lora!.adapterParameters, 2 * 224 * 8);
  const text = inspectModel(dir, { loraR: 8, loraTargets: 'all-linear' });
  for (const part of [`LoRA r 8 on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj: ${A.toLocaleString('en-US')} adapter parameters`, 'frozen base 16-bit', 'with a 16-bit base']) {
    assert.ok(text.includes(part), `report lacks '${part}':\n${text}`);
  }
});

test('Mistral fixture: the sliding window caps the attention context of the FLOP count', () => {
  const at = (sequenceLength: number) => describeModel(path.join(HF, 'mistral'), { sequenceLength }).flops.forwardPerToken;
  const attentionPerKey = 2 * 2 * 2 * 4 * 16; // layers * heads * headDim
  assert.is(at(4) - at(2), 2 * attentionPerKey);
  assert.is(at(256), at(8)); // window 8
});

test('inspect without weights, and with weights that do not match', () => {
  const dir = fs.mkdtempSync(path.join(tmpDir, 'model-'));
  fs.copyFileSync(path.join(HF, 'mistral/config.json'), path.join(dir, 'config.json'));
  assert.is(describeModel(dir).weights, null);
  assert.ok(inspectModel(dir).endsWith('weights: none in this folder'));
  fs.copyFileSync(path.join(HF, 'gpt_neox/model.safetensors'), path.join(dir, 'model.safetensors'));
  const problem = describeModel(dir).weights!.problem!;
  assert.ok(problem.includes('the weights do not match the parameter table') && problem.includes('missing') && problem.includes('unexpected'), problem);
});

test('the text report names the architecture, the count and the plan', () => {
  const text = inspectModel(path.join(HF, 'reward'));
  for (const part of ['GPT-NeoX reward model', 'parameters: 108,352', 'AdamW moments f32   846.50 KiB', 'parallel residual', 'sequence length 256']) {
    assert.ok(text.includes(part), `report lacks '${part}':\n${text}`);
  }
});

test('juice inspect: usage errors return 2, a folder returns 0', async () => {
  const log = console.log, error = console.error;
  const printed: string[] = [];
  console.log = (s: string) => printed.push(s);
  console.error = (s: string) => printed.push(s);
  try {
    assert.is(await inspect.main([]), 2);
    assert.is(await inspect.main([path.join(HF, 'mistral'), '--seq-len', 'x']), 2);
    assert.is(await inspect.main([path.join(HF, 'mistral'), '--bogus']), 2);
    assert.is(await inspect.main([path.join(HF, 'mistral'), '--json', '--seq-len', '16']), 0);
  } finally {
    console.log = log; console.error = error;
  }
  assert.is(JSON.parse(printed.at(-1)!).flops.sequenceLength, 16);
});

if (has7B) {
  test('Mistral-7B-v0.1: 7,241,732,096 parameters; the missing shards are reported, not fatal', () => {
    const s = describeModel(MISTRAL_7B, { sequenceLength: 4096 });
    assert.is(s.parameters, 7_241_732_096);
    assert.is(s.memory.weights16, 2 * 7_241_732_096);
    assert.is(s.flops.forwardPerToken, 2 * (7_241_732_096 - 32000 * 4096) + 2 * 2 * 32 * 4096 * 4096);
    assert.ok(s.weights!.problem!.includes('does not exist'), s.weights!.problem!);
  });
}

test.run();
