// juice inspect: parameter counts against the fixture files, the memory plan and FLOP formulas,
// the real Mistral-7B config when ../shared/data is present. No GPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { describeModel, inspectCommand, inspectModel } from '../models/inspect.ts';

const HF = fileURLToPath(new URL('./fixtures/hf/', import.meta.url));
const MISTRAL_7B = fileURLToPath(new URL('../../shared/data/tokenizers/mistral-7b-v0.1/', import.meta.url));
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
    assert.equal(s.weights, { path: file, parametersByDtype: { F32: s.parameters }, problem: null }, kind);
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

test('inspectCommand: usage errors return 2, a folder returns 0', async () => {
  const log = console.log, error = console.error;
  const printed: string[] = [];
  console.log = (s: string) => printed.push(s);
  console.error = (s: string) => printed.push(s);
  try {
    assert.is(await inspectCommand([]), 2);
    assert.is(await inspectCommand([path.join(HF, 'mistral'), '--seq-len', 'x']), 2);
    assert.is(await inspectCommand([path.join(HF, 'mistral'), '--bogus']), 2);
    assert.is(await inspectCommand([path.join(HF, 'mistral'), '--json', '--seq-len', '16']), 0);
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
