// LoRA: the PEFT fixture (3 AdamW steps on the adapters, merged weights and logits), PEFT's names and shapes for
// both architectures, merge = the adapted forward, save -> load in PEFT's format and its refusals, the
// merge-lora command, and dropout (the counter-based mask, its statistics, its gradient).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backward, clearTape, noGrad } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { SafetensorsFile, readSafetensors, writeSafetensors } from '../../engine/safetensors.ts';
import { Tensor, numelOf, tidyAsync } from '../../engine/tensor.ts';
import { dropout } from '../../engine/ops/dropout.ts';
import { sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { dropoutKeeps } from '../../kernels/dropout.ts';
import { CausalLM, loadCausalLM } from '../../models/causal_lm.ts';
import { loadConfig, type ModelConfig } from '../../models/config.ts';
import { initParameters } from '../../models/init.ts';
import { LORA_TARGET_MODULES, loraScaling } from '../../models/lora.ts';
import { adapterSpecs, attachLora, loadLora, loraConfig, mergeLora, readLoraConfig, saveLora } from '../../models/peft.ts';
import { mergeLora as mergeLoraCommand } from '../../bin/commands/merge_lora.ts';
import { verifyFolder } from '../../train/verify.ts';
import { assertClose, initGpu, randInt, randn } from '../support/util.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const LORA_FIXTURE = path.join(FIXTURES, 'train', 'lora');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-lora-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
let tmpCount = 0;
const freshDir = () => path.join(tmpDir, `d${tmpCount++}`);

test('lora fixture: loss per step, step-1 gradients, adapters after each step, merged weights and logits (juice verify)', async () => {
  await initGpu();
  const report = await verifyFolder(LORA_FIXTURE);
  assert.is(report.kind, 'lora');
  const names = report.checks.map((c) => c.name);
  for (const n of ['loss', 'merged_logits', 'merged.lm_head.weight', 'step3.base_model.model.lm_head.lora_B.weight', 'grad_step1.base_model.model.model.layers.1.mlp.down_proj.lora_A.weight'])
    assert.ok(names.includes(n), `no check of ${n}`);
  assert.is(names.filter((n) => n.startsWith('step')).length, 3 * 30);
  assert.is(names.filter((n) => n.startsWith('merged.')).length, 15);
  for (const c of report.checks) assert.ok(c.pass, `${c.name}: relative error ${c.relErr} > ${c.tol}`);
});

/** A tiny random model of a fixture's config, with adapters on every target module and random non-zero B. */
function adaptedModel(config: ModelConfig, seed: number, opts: { r?: number; dropout?: number; useRslora?: boolean } = {}): CausalLM {
  const model = new CausalLM(config, initParameters(config, seed));
  const lora = loraConfig(config, { r: opts.r ?? 4, alpha: 8, dropout: opts.dropout ?? 0, useRslora: opts.useRslora, targetModules: [...LORA_TARGET_MODULES[config.modelType]] });
  const values = new Map(adapterSpecs(config, lora).map((s, k) => [s.name, Float32Array.from(randn(numelOf(s.shape), seed + 100 + k, 0.1))]));
  attachLora(model, lora, values);
  return model;
}

const configOf = (name: string) => loadConfig(path.join(FIXTURES, 'hf', name));

test('PEFT names and shapes for GPT-NeoX and Mistral; the optimizer gets exactly the adapters; PEFT\'s initialisation', async () => {
  await initGpu();
  const neox = configOf('gpt_neox'), mistral = configOf('mistral');
  const specs = (c: ModelConfig) => adapterSpecs(c, loraConfig(c, { r: 4, targetModules: [...LORA_TARGET_MODULES[c.modelType]] }));
  const byName = (c: ModelConfig) => new Map(specs(c).map((s) => [s.name, s.shape]));
  const n = byName(neox), C = neox.hidden;
  assert.equal(n.get('base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight'), [4, C]);
  assert.equal(n.get('base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_B.weight'), [3 * C, 4]);
  assert.equal(n.get('base_model.model.gpt_neox.layers.1.mlp.dense_4h_to_h.lora_A.weight'), [4, neox.intermediate]);
  assert.equal(n.get('base_model.model.embed_out.lora_B.weight'), [neox.vocabSize, 4]);
  assert.is(n.size, 2 * (4 * neox.layers + 1));
  const m = byName(mistral);
  assert.equal(m.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight'), [mistral.heads * mistral.headDim, 4]);
  assert.equal(m.get('base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight'), [mistral.kvHeads * mistral.headDim, 4]);
  assert.equal(m.get('base_model.model.lm_head.lora_A.weight'), [4, mistral.hidden]);
  assert.is(m.size, 2 * (7 * mistral.layers + 1));

  for (const c of [neox, mistral]) {
    const model = new CausalLM(c, initParameters(c, 1));
    attachLora(model, loraConfig(c, { r: 4, targetModules: [...LORA_TARGET_MODULES[c.modelType]] }), undefined, 7);
    const entries = model.params.entries().map((e) => e.name);
    assert.equal(entries, specs(c).map((s) => s.name), `${c.modelType}: optimizer entries`);
    for (const s of specs(c)) {
      const v = await model.params.get(s.name).toArray();
      if (s.name.endsWith('lora_B.weight')) assert.ok(v.every((x) => x === 0), `${s.name}: B starts at 0`);
      else {
        const bound = 1 / Math.sqrt(s.shape[1]), max = Math.max(...v.map(Math.abs));
        assert.ok(max <= bound && max > 0.8 * bound, `${s.name}: |A| ${max} for the bound 1/sqrt(in) = ${bound}`);
      }
    }
    // B = 0: the adapted model is the base.
    const ids = Tensor.fromArray(randInt(2 * 6, c.vocabSize, 3), [2, 6], 'i32');
    const base = new CausalLM(c, initParameters(c, 1));
    assertClose(await noGrad(() => model.forward(ids)).toArray(), await noGrad(() => base.forward(ids)).toArray(), 0, `${c.modelType}: B = 0 is the base`);
    model.dispose();
    base.dispose();
  }
});

for (const name of ['gpt_neox', 'mistral']) {
  test(`${name}: the merged model's logits equal the adapted forward's (random non-zero B, rsLoRA too); the merge is charged to 'merge'`, async () => {
    await initGpu();
    const config = configOf(name);
    for (const useRslora of [false, true]) {
      const model = adaptedModel(config, 5, { useRslora });
      assert.is(model.lora!.scaling, useRslora ? 8 / 2 : 2);
      const ids = Tensor.fromArray(randInt(2 * 7, config.vocabSize, 9), [2, 7], 'i32');
      const adapted = await noGrad(() => model.forward(ids)).toArray();
      ledger.reset();
      await mergeLora(model);
      assert.ok(ledger.byPhase().some((r) => r.key === 'merge' && r.flops > 0), 'merge phase in the ledger');
      assert.is(model.lora, undefined);
      assert.ok(model.params.specs.every((s) => !s.adapter), 'adapters dropped');
      assertClose(await noGrad(() => model.forward(ids)).toArray(), adapted, 1e-5, `${name} merged logits (rsLoRA ${useRslora})`);
      ids.dispose();
      model.dispose();
    }
  });
}

test('the adapted forward: loraDown / loraUp in the ledger, gradients only for the adapters, base frozen', async () => {
  await initGpu();
  const config = configOf('mistral');
  const model = adaptedModel(config, 11);
  ledger.reset();
  await tidyAsync(async () => {
    const ids = Tensor.fromArray(randInt(2 * 5, config.vocabSize, 4), [2, 5], 'i32');
    const logits = ledger.inPhase('forward', () => model.forward(ids)); // [2, 5, V]
    backward(sumLastDim(reshape(logits, [logits.numel])));
  });
  const ops = new Set(ledger.byOp().map((r) => r.key));
  for (const op of ['loraDown', 'loraUp']) assert.ok(ops.has(op), `ledger op ${op}`);
  for (const s of model.params.specs) assert.is(model.params.get(s.name).grad !== null, s.adapter, `${s.name}: gradient iff adapter`);
  model.dispose();
});

test('a bf16 frozen base: adapters train on it, and merging rounds the f32 merge back to bf16', async () => {
  await initGpu();
  const model = loadCausalLM(LORA_FIXTURE, { weightsDtype: 'bf16' });
  loadLora(model, path.join(LORA_FIXTURE, 'adapter_step3'));
  const ids = Tensor.fromArray(randInt(2 * 6, model.config.vocabSize, 8), [2, 6], 'i32');
  await tidyAsync(async () => { backward(sumLastDim(reshape(model.forward(ids), [-1]))); });
  for (const s of model.params.specs) assert.is(model.params.get(s.name).grad !== null, s.adapter, `${s.name}: gradient iff adapter`);
  const adapted = await noGrad(() => model.forward(ids)).toArray();
  await mergeLora(model);
  assert.is(model.params.get('model.layers.0.self_attn.q_proj.weight').dtype, 'bf16');
  // The merged weights are rounded to bf16 (2^-9 relative per element): the logits move by about that much.
  assertClose(await noGrad(() => model.forward(ids)).toArray(), adapted, 1e-2, 'bf16 merged logits');
  ids.dispose();
  model.dispose();
});

test('save -> load in PEFT\'s format: adapter_config.json fields, names, values bit for bit, the same logits', async () => {
  await initGpu();
  const config = configOf('gpt_neox');
  const model = adaptedModel(config, 21, { dropout: 0.1 });
  const dir = freshDir();
  await saveLora(model, dir);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
  assert.equal(
    { ...json, target_modules: undefined },
    { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: undefined, bias: 'none', fan_in_fan_out: false,
      use_rslora: false, base_model_name_or_path: '', inference_mode: true, modules_to_save: null, init_lora_weights: true },
  );
  assert.equal(json.target_modules, [...LORA_TARGET_MODULES.gpt_neox]);
  const file = SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors'));
  assert.ok(file.has('base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight'));
  assert.ok(file.has('base_model.model.embed_out.lora_B.weight'));
  file.close();
  const loaded = new CausalLM(config, initParameters(config, 21)); // adaptedModel's base
  const lora = loadLora(loaded, dir);
  assert.is(lora.dropout, 0.1);
  for (const s of model.params.specs.filter((s) => s.adapter))
    assert.equal(Array.from(await loaded.params.get(s.name).toArray()), Array.from(await model.params.get(s.name).toArray()), s.name);
  const ids = Tensor.fromArray(randInt(6, config.vocabSize, 2), [1, 6], 'i32');
  assertClose(await noGrad(() => loaded.forward(ids)).toArray(), await noGrad(() => model.forward(ids)).toArray(), 0, 'logits after the round trip');
  model.dispose();
  loaded.dispose();
});

test('loading refuses: every name and shape mismatch at once naming the file; peft_type, bias, fan_in_fan_out naming file, field and value', async () => {
  await initGpu();
  const config = loadConfig(LORA_FIXTURE);
  const dir = freshDir();
  fs.cpSync(path.join(LORA_FIXTURE, 'adapter_init'), dir, { recursive: true });
  const weights = path.join(dir, 'adapter_model.safetensors');
  const tensors = readSafetensors(weights);
  const out: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of tensors) out[name] = { dtype: 'F32', shape: t.shape, data: t.data as Float32Array };
  const qA = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', kB = 'base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight';
  delete out[qA];
  out[kB] = { dtype: 'F32', shape: [8, 4], data: new Float32Array(32) };
  out['base_model.model.model.layers.0.mlp.extra.lora_A.weight'] = { dtype: 'F32', shape: [4, 2], data: new Float32Array(8) };
  writeSafetensors(weights, out);
  const model = () => new CausalLM(config, initParameters(config, 1));
  const m = model();
  assert.throws(() => loadLora(m, dir), (e: Error) => [weights, `1 missing`, qA, '1 unexpected', 'mlp.extra.lora_A', '1 wrongly shaped', `${kB}: [8, 4]`].every((p) => e.message.includes(p)));
  m.dispose();
  const configFile = path.join(dir, 'adapter_config.json');
  const base = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  for (const [field, value, hint] of [['peft_type', 'PREFIX_TUNING', 'LORA'], ['bias', 'all', 'none'], ['fan_in_fan_out', true, 'false']] as const) {
    fs.writeFileSync(configFile, JSON.stringify({ ...base, [field]: value }));
    assert.throws(() => readLoraConfig(dir, config), (e: Error) => e.message.includes(configFile) && e.message.includes(`'${field}'`) && e.message.includes(JSON.stringify(value)) && e.message.includes(hint), field);
  }
  fs.writeFileSync(configFile, JSON.stringify({ ...base, target_modules: ['q_proj', 'query_key_value'] }));
  assert.throws(() => readLoraConfig(dir, config), /'target_modules'.*'query_key_value' are no mistral module/);
});

test('juice merge-lora: the fixture\'s adapter merged into an f32 folder reproduces merged_logits; base dtype keeps 16 bits; output checked first', async () => {
  await initGpu();
  const out = freshDir();
  const step3 = path.join(LORA_FIXTURE, 'adapter_step3');
  assert.is(await mergeLoraCommand.main(['--model', LORA_FIXTURE, '--adapter', step3, '--out', out]), 0);
  for (const f of ['config.json', 'model.safetensors']) assert.ok(fs.existsSync(path.join(out, f)), f);
  const expected = readSafetensors(path.join(LORA_FIXTURE, 'expected.safetensors'));
  const inputs = readSafetensors(path.join(LORA_FIXTURE, 'inputs.safetensors'));
  const merged = loadCausalLM(out, { frozen: true });
  const evalIds = inputs.get('eval_ids')!;
  const logits = await noGrad(() => merged.forward(Tensor.fromArray(evalIds.data as Int32Array, evalIds.shape, 'i32'))).toArray();
  // adapter_step3 holds the float64 run's adapter rounded to f32: the same logits at the forward tolerance.
  assertClose(logits, expected.get('merged_logits')!.data as Float64Array, 1e-5, 'merged folder logits');
  merged.dispose();

  // A bf16 base: --dtype base writes bf16, the merged tensors rounded from the f32 merge.
  const bf16Base = freshDir();
  fs.mkdirSync(bf16Base);
  fs.copyFileSync(path.join(LORA_FIXTURE, 'config.json'), path.join(bf16Base, 'config.json'));
  const baseTensors = readSafetensors(path.join(LORA_FIXTURE, 'model.safetensors'));
  writeSafetensors(path.join(bf16Base, 'model.safetensors'), Object.fromEntries([...baseTensors].map(([n, t]) => [n, { dtype: 'BF16' as const, shape: t.shape, data: t.data as Float32Array }])));
  const out16 = freshDir();
  assert.is(await mergeLoraCommand.main(['--model', bf16Base, '--adapter', step3, '--out', out16, '--dtype', 'base']), 0);
  const file = SafetensorsFile.open(path.join(out16, 'model.safetensors'));
  assert.ok(file.names().every((n) => file.info(n).dtype === 'BF16'), 'every tensor bf16');
  const ref = expected.get('merged.model.layers.0.self_attn.q_proj.weight')!.data as Float64Array;
  // bf16 base widened, merged in f32 and rounded: within bf16's half-ulp (2^-9 relative) of the f64 merge of the f32 base plus the base's own rounding.
  assertClose(file.read('model.layers.0.self_attn.q_proj.weight') as Float32Array, ref, 2 ** -8, 'bf16 merged weight');
  file.close();

  // The output is checked before any work: not empty, or an input folder.
  assert.is(await mergeLoraCommand.main(['--model', LORA_FIXTURE, '--adapter', step3, '--out', out]), 2);
  assert.is(await mergeLoraCommand.main(['--model', LORA_FIXTURE, '--adapter', step3, '--out', path.join(tmpDir, 'no', 'such')]), 2);
});

test('dropout: keeps 1-p of the elements scaled by 1/(1-p), the host reference\'s mask, same key same mask, another counter another', async () => {
  await initGpu();
  const n = 1 << 18, p = 0.25;
  const x = Tensor.fromArray(new Float32Array(n).fill(1), [n]);
  const key = { seed: 1234, counter: 7, stream: 3 };
  const y = await noGrad(() => dropout(x, { p, ...key })).toArray();
  const kept = y.filter((v) => v !== 0);
  assert.ok(kept.every((v) => v === Math.fround(1 / (1 - p))), 'kept elements scaled by 1/(1-p)');
  // Binomial: the standard deviation of the kept fraction is sqrt(p(1-p)/n) ≈ 8.5e-4; 6 of them.
  assert.ok(Math.abs(kept.length / n - (1 - p)) < 6 * Math.sqrt(p * (1 - p) / n), `kept ${kept.length / n}`);
  for (let i = 0; i < n; i += 97) assert.is(y[i] !== 0, dropoutKeeps(i, p, key), `element ${i} against the host reference`);
  const again = await noGrad(() => dropout(x, { p, ...key })).toArray();
  assert.ok(again.every((v, i) => v === y[i]), 'same key, same mask');
  const next = await noGrad(() => dropout(x, { p, ...key, counter: 8 })).toArray();
  const differ = Array.from(next).filter((v, i) => (v === 0) !== (y[i] === 0)).length;
  // Independent masks differ on 2p(1-p) of the elements.
  assert.ok(Math.abs(differ / n - 2 * p * (1 - p)) < 0.01, `another counter differs on ${differ / n}`);
  const otherStream = await noGrad(() => dropout(x, { p, ...key, stream: 4 })).toArray();
  assert.ok(otherStream.some((v, i) => (v === 0) !== (y[i] === 0)), 'another stream, another mask');
  assert.is(dropout(x, { p: 0, ...key }), x, 'p = 0 is the identity');
  assert.throws(() => dropout(x, { p: 1, ...key }), /\[0, 1\)/);
  x.dispose();
});

test('dropout backward: dx = dy · mask / (1 - p), the forward\'s mask recomputed; finite differences agree', async () => {
  await initGpu();
  const n = 4096, p = 0.5;
  const xs = Float32Array.from(randn(n, 3));
  const x = Tensor.fromArray(xs, [n]);
  x.requiresGrad = true;
  const dy = Float32Array.from(randn(n, 4));
  const key = { seed: 9, counter: 1, stream: 0 };
  const y = dropout(x, { p, ...key });
  const yv = await y.toArray();
  const dyT = Tensor.fromArray(dy, [n]);
  backward(y, dyT);
  const dx = await x.grad!.toArray();
  const mask = Array.from({ length: n }, (_, i) => (dropoutKeeps(i, p, key) ? 1 / (1 - p) : 0));
  assertClose(dx, dy.map((g, i) => g * mask[i]), 0, 'dx = dy · mask · scale');
  // The function x -> Σ dy·y is linear in x with slope dy·mask·scale: a finite difference of the forward agrees.
  const f = (v: Float32Array) => v.reduce((s, vi, i) => s + dy[i] * vi, 0);
  const h = 1e-2, i0 = mask.findIndex((m) => m > 0);
  const bumped = Float32Array.from(xs); bumped[i0] += h;
  const yPlus = await noGrad(() => dropout(Tensor.fromArray(bumped, [n]), { p, ...key })).toArray();
  assert.ok(Math.abs((f(yPlus as Float32Array) - f(yv as Float32Array)) / h - dx[i0]) < 1e-2 * Math.abs(dx[i0]) + 1e-3, 'finite difference');
  for (const t of [x.grad!, x, y, dyT]) t.dispose();
});

test('LoRA dropout runs only while training with a tape: evaluation and generation never drop; the counter changes the mask', async () => {
  await initGpu();
  const config = configOf('mistral');
  const model = adaptedModel(config, 31, { dropout: 0.5 });
  const ids = Tensor.fromArray(randInt(2 * 5, config.vocabSize, 6), [2, 5], 'i32');
  const evalLogits = await noGrad(() => model.forward(ids)).toArray();
  model.lora!.training = true;
  assertClose(await noGrad(() => model.forward(ids)).toArray(), evalLogits, 0, 'training under noGrad: no dropout');
  const trainLogits = async () => { const l = await tidyAsync(() => model.forward(ids).toArray()); clearTape(); return l; };
  const a = await trainLogits(), b = await trainLogits();
  assertClose(b, a, 0, 'same counter, same masks');
  assert.ok(a.some((v, i) => v !== evalLogits[i]), 'dropout changed the training forward');
  model.lora!.counter++;
  assert.ok((await trainLogits()).some((v, i) => v !== a[i]), 'another counter, other masks');
  const { rows } = await model.generate([[1, 2, 3]], { maxNewTokens: 2 });
  model.lora!.training = false;
  const { rows: evalRows } = await model.generate([[1, 2, 3]], { maxNewTokens: 2 });
  assert.equal(rows[0].tokens, evalRows[0].tokens, 'generation ignores the training flag');
  assert.is(loraScaling({ r: 4, alpha: 8, useRslora: false }), 2);
  ids.dispose();
  model.dispose();
});

test.run();
