// GPT-NeoX and Mistral on the GPU: the transformers fixtures (logits, loss, every gradient, greedy tokens, both
// config layouts), other shapes against a float64 CPU reference of both architectures, KV-cache steps against
// full recomputation, and a Pythia-70m-shaped model forward and backward.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backward, noGrad } from '../../engine/autodiff.ts';
import { ParameterSet } from '../../engine/params.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/safetensors.ts';
import { Tensor, numelOf, tidy, tidyAsync } from '../../engine/tensor.ts';
import { inverseFrequencies } from '../../engine/ops/rotary.ts';
import { ConfigError, modelParams, parseConfig, type ModelConfig } from '../../models/config.ts';
import { CausalLM, loadCausalLM } from '../../models/causal_lm.ts';
import { initParameters } from '../../models/init.ts';
import { nextTokenLoss } from '../../train/objectives/sft.ts';
import { verifyFolder } from '../../train/verify.ts';
import { assertClose, download, initGpu, randInt, randn } from '../support/util.ts';

const HF = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
const FORWARD_TOL = 1e-5;

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-models-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

for (const name of ['gpt_neox', 'mistral']) {
  test(`${name} fixture: logits, loss, every gradient, greedy tokens, classic config (juice verify)`, async () => {
    await initGpu();
    const report = await verifyFolder(path.join(HF, name));
    assert.is(report.kind, 'causal-lm');
    const names = report.checks.map((c) => c.name);
    for (const n of ['logits', 'loss', 'greedy_tokens', 'logits (config.classic.json)', 'grad.lm_head.weight']) assert.ok(names.includes(n), `${name}: no check of ${n}`);
    const grads = report.checks.filter((c) => c.name.startsWith('grad.'));
    assert.is(grads.length, new Set(grads.map((c) => c.name)).size);
    assert.ok(grads.length >= 20, `${name}: ${grads.length} gradient checks`);
    for (const c of report.checks) assert.ok(c.pass, `${name} ${c.name}: relative error ${c.relErr} > ${c.tol}`);
  });
}

// ---------------------------------------------------------------------------------------------
// A float64 CPU reference of both architectures, straight from transformers' modeling files.

/** erf by its Maclaurin series (|x| <= 4: terms up to 1e7, so ~1e-9 absolute) and 1 beyond (1 - erf(4) = 1.5e-8). */
function erf64(x: number): number {
  if (Math.abs(x) > 4) return Math.sign(x);
  let term = x, sum = x;
  for (let n = 1; n < 100; n++) { term *= (-x * x) / n; sum += term / (2 * n + 1); }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu64 = (x: number) => 0.5 * x * (1 + erf64(x / Math.SQRT2));
const silu64 = (x: number) => x / (1 + Math.exp(-x));

/** x [N, inDim] · W[outDim, inDim]ᵀ (+ bias) -> [N, outDim]. */
function linear64(x: Float64Array, W: Float64Array, outDim: number, bias?: Float64Array): Float64Array {
  const inDim = W.length / outDim, N = x.length / inDim, y = new Float64Array(N * outDim);
  for (let n = 0; n < N; n++) for (let o = 0; o < outDim; o++) {
    let s = bias?.[o] ?? 0;
    for (let i = 0; i < inDim; i++) s += x[n * inDim + i] * W[o * inDim + i];
    y[n * outDim + o] = s;
  }
  return y;
}

/** LayerNorm (with bias) or RMSNorm (without) over rows of C. */
function norm64(x: Float64Array, weight: Float64Array, bias: Float64Array | undefined, eps: number): Float64Array {
  const C = weight.length, y = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    const row = x.subarray(r * C, (r + 1) * C);
    const mean = bias ? row.reduce((s, v) => s + v, 0) / C : 0;
    const rstd = 1 / Math.sqrt(row.reduce((s, v) => s + (v - mean) ** 2, 0) / C + eps);
    row.forEach((v, c) => { y[r * C + c] = (v - mean) * rstd * weight[c] + (bias?.[c] ?? 0); });
  }
  return y;
}

const add64 = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

/**
 * logits [B, T, V] of ids [B, T] for weights by parameter name. Heads are read straight from the projections:
 * head h of a row is `slot(h)` · D .. + D, with GPT-NeoX's rows grouped per head as [q, k, v].
 */
function referenceLogits(cfg: ModelConfig, w: (name: string) => Float64Array, ids: Int32Array, B: number, T: number): Float64Array {
  const { hidden: C, heads: H, kvHeads: KVH, headDim: D, rotaryDims, eps } = cfg;
  const neox = cfg.modelType === 'gpt_neox';
  const top = neox ? 'gpt_neox.' : 'model.';
  const embed = w(top + (neox ? 'embed_in.weight' : 'embed_tokens.weight'));
  const norm = (x: Float64Array, name: string) => norm64(x, w(`${name}.weight`), neox ? w(`${name}.bias`) : undefined, eps);
  const bias = (name: string) => (cfg.attentionBias ? w(name) : undefined);
  const invFreq = inverseFrequencies(rotaryDims, cfg.ropeTheta);
  const window = cfg.slidingWindow ?? Infinity;

  /** Per (b, t) row of `m` (width floats): head h at m[row, slot(h)·D ..], rotated when `rotate`. */
  const headOf = (m: Float64Array, width: number, slot: number, b: number, t: number, rotate: boolean): Float64Array => {
    const x = m.slice((b * T + t) * width + slot * D, (b * T + t) * width + slot * D + D);
    if (!rotate) return x;
    const half = rotaryDims / 2, y = x.slice();
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(t * invFreq[i]); // transformers computes the angles in f32
      y[i] = x[i] * Math.cos(angle) - x[i + half] * Math.sin(angle);
      y[i + half] = x[i + half] * Math.cos(angle) + x[i] * Math.sin(angle);
    }
    return y;
  };

  const selfAttention = (x: Float64Array, l: string): Float64Array => {
    let q: (h: number, b: number, t: number) => Float64Array, k: typeof q, v: typeof q;
    if (neox) {
      const qkv = linear64(x, w(`${l}attention.query_key_value.weight`), 3 * C, bias(`${l}attention.query_key_value.bias`));
      q = (h, b, t) => headOf(qkv, 3 * C, 3 * h, b, t, true);
      k = (h, b, t) => headOf(qkv, 3 * C, 3 * h + 1, b, t, true);
      v = (h, b, t) => headOf(qkv, 3 * C, 3 * h + 2, b, t, false);
    } else {
      const [qs, ks, vs] = ['q', 'k', 'v'].map((n, i) => linear64(x, w(`${l}self_attn.${n}_proj.weight`), (i === 0 ? H : KVH) * D));
      q = (h, b, t) => headOf(qs, H * D, h, b, t, true);
      k = (h, b, t) => headOf(ks, KVH * D, Math.floor(h / (H / KVH)), b, t, true);
      v = (h, b, t) => headOf(vs, KVH * D, Math.floor(h / (H / KVH)), b, t, false);
    }
    const merged = new Float64Array(B * T * H * D); // [B, T, H·D]
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
      const qi = q(h, b, i), visible = Array.from({ length: T }, (_, j) => j).filter((j) => j <= i && i - j < window);
      const scores = visible.map((j) => k(h, b, j).reduce((s, kd, d) => s + kd * qi[d], 0) / Math.sqrt(D));
      const max = Math.max(...scores), p = scores.map((s) => Math.exp(s - max)), sum = p.reduce((a, c) => a + c, 0);
      visible.forEach((j, n) => v(h, b, j).forEach((vd, d) => { merged[((b * T + i) * H + h) * D + d] += (p[n] / sum) * vd; }));
    }
    return neox ? linear64(merged, w(`${l}attention.dense.weight`), C, bias(`${l}attention.dense.bias`)) : linear64(merged, w(`${l}self_attn.o_proj.weight`), C);
  };

  const mlp = (x: Float64Array, l: string): Float64Array => {
    if (neox) return linear64(linear64(x, w(`${l}mlp.dense_h_to_4h.weight`), cfg.intermediate, w(`${l}mlp.dense_h_to_4h.bias`)).map(gelu64), w(`${l}mlp.dense_4h_to_h.weight`), C, w(`${l}mlp.dense_4h_to_h.bias`));
    const up = linear64(x, w(`${l}mlp.up_proj.weight`), cfg.intermediate);
    return linear64(linear64(x, w(`${l}mlp.gate_proj.weight`), cfg.intermediate).map((g, i) => silu64(g) * up[i]), w(`${l}mlp.down_proj.weight`), C);
  };

  let x: Float64Array = new Float64Array(B * T * C); // [B·T, C]
  ids.forEach((id, r) => x.set(embed.subarray(id * C, (id + 1) * C), r * C));
  for (let layer = 0; layer < cfg.layers; layer++) {
    const l = `${top}layers.${layer}.`;
    const attn = selfAttention(norm(x, `${l}input_layernorm`), l);
    if (cfg.parallelResidual) x = add64(add64(x, attn), mlp(norm(x, `${l}post_attention_layernorm`), l));
    else { x = add64(x, attn); x = add64(x, mlp(norm(x, `${l}post_attention_layernorm`), l)); }
  }
  x = norm(x, neox ? 'gpt_neox.final_layer_norm' : 'model.norm');
  const head = cfg.tieWordEmbeddings ? embed : w(neox ? 'embed_out.weight' : 'lm_head.weight');
  return linear64(x, head, cfg.vocabSize);
}

/** A model folder with random weights: norm scales near 1, small biases, projections scaled by 1/sqrt(fan-in). */
function writeRandomModel(dir: string, configJson: Record<string, unknown>, seed: number): { cfg: ModelConfig; weights: Map<string, Float64Array> } {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson));
  const cfg = parseConfig(configJson, dir);
  const weights = new Map<string, Float64Array>();
  const tensors: Record<string, TensorToWrite> = {};
  modelParams(cfg).forEach((s, i) => {
    const n = numelOf(s.shape);
    const std = s.role === 'norm' || s.role === 'bias' ? 0.1 : s.role === 'embedding' ? 1 : 1 / Math.sqrt(s.shape[1]);
    const values = randn(n, seed + i, std).map((v) => (s.role === 'norm' ? Math.fround(1 + v) : v));
    weights.set(s.name, values);
    tensors[s.name] = { shape: s.shape, data: Float32Array.from(values) };
  });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return { cfg, weights };
}

const OTHER_SHAPES: [string, Record<string, unknown>][] = [
  ['GPT-NeoX: sequential residual, 3 layers, head_dim 8, half of it rotary', {
    model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], vocab_size: 41, hidden_size: 32, num_hidden_layers: 3,
    num_attention_heads: 4, intermediate_size: 64, rotary_pct: 0.5, rotary_emb_base: 500, max_position_embeddings: 64,
    use_parallel_residual: false, layer_norm_eps: 1e-5,
  }],
  ['Mistral: GQA 8 heads on 2, window 3, head_dim 12 from the config, tied embeddings', {
    model_type: 'mistral', architectures: ['MistralForCausalLM'], vocab_size: 43, hidden_size: 32, num_hidden_layers: 2,
    num_attention_heads: 8, num_key_value_heads: 2, head_dim: 12, intermediate_size: 48, sliding_window: 3,
    rope_theta: 1000, max_position_embeddings: 64, tie_word_embeddings: true, rms_norm_eps: 1e-6,
  }],
];

OTHER_SHAPES.forEach(([what, json], i) => {
  test(`${what}: logits against the float64 CPU reference`, async () => {
    await initGpu();
    const B = 2, T = 7;
    const { cfg, weights } = writeRandomModel(path.join(tmpDir, `shape${i}`), json, 100 * (i + 1));
    const ids = randInt(B * T, cfg.vocabSize, 7 + i);
    const ref = referenceLogits(cfg, (n) => weights.get(n)!, ids, B, T);
    const model = loadCausalLM(path.join(tmpDir, `shape${i}`));
    await tidyAsync(async () => {
      const logits = noGrad(() => model.forward(Tensor.fromArray(ids, [B, T], 'i32')));
      assert.equal(logits.shape, [B, T, cfg.vocabSize]);
      assertClose(await download(logits), ref, FORWARD_TOL, `${what} logits`);
    });
    model.dispose();
  });
});

test('the CPU reference reproduces the gpt_neox and mistral fixtures\' logits', () => {
  for (const name of ['gpt_neox', 'mistral']) {
    const dir = path.join(HF, name);
    const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), dir);
    const weights = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    const expected = SafetensorsFile.open(path.join(dir, 'expected.safetensors'));
    const [B, T] = expected.info('input_ids').shape;
    const ours = referenceLogits(cfg, (n) => Float64Array.from(weights.read(n)), expected.read('input_ids') as Int32Array, B, T);
    assertClose(ours, expected.read('logits'), 1e-6, `${name} reference logits`);
    weights.close();
    expected.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Generation: the KV cache against full recomputation.

/** Logits of ids [1, N] by full recomputation, and by a prompt of P then steps of `chunk` new tokens with the cache. */
async function cachedAgainstFull(model: CausalLM, ids: Int32Array, P: number, chunk: number): Promise<void> {
  const N = ids.length, V = model.config.vocabSize;
  const full = await tidyAsync(() => download(noGrad(() => model.forward(Tensor.fromArray(ids, [1, N], 'i32')))));
  const cache = model.createCache(1, N);
  for (let start = 0, end = P; start < N; start = end, end = Math.min(N, end + chunk)) {
    await tidyAsync(async () => {
      const logits = model.step(Tensor.fromArray(ids.subarray(start, end), [1, end - start], 'i32'), cache);
      assert.is(cache[0].length, end);
      assertClose(await download(logits), full.subarray(start * V, end * V), FORWARD_TOL, `${model.config.modelType}: positions ${start}..${end - 1} with the cache`);
    });
  }
  for (const layer of cache) layer.dispose();
}

test('KV cache: prompt then single tokens and chunks of 3 equal full recomputation (NeoX; Mistral across its window)', async () => {
  await initGpu();
  for (const name of ['gpt_neox', 'mistral']) {
    const model = loadCausalLM(path.join(HF, name));
    const ids = randInt(20, model.config.vocabSize, 31); // 20 > Mistral's window of 8
    await cachedAgainstFull(model, ids, 5, 1);
    await cachedAgainstFull(model, ids, 4, 3);
    model.dispose();
  }
});

test('KV cache: refused with gradients on, and beyond its length', async () => {
  await initGpu();
  const model = loadCausalLM(path.join(HF, 'gpt_neox'));
  const cache = model.createCache(1, 4);
  tidy(() => {
    assert.throws(() => model.forward(Tensor.fromArray([1, 2], [1, 2], 'i32'), cache), /noGrad/);
  });
  tidy(() => {
    model.step(Tensor.fromArray([1, 2, 3], [1, 3], 'i32'), cache);
    assert.throws(() => model.step(Tensor.fromArray([4, 5], [1, 2], 'i32'), cache), /3 \+ 2 positions exceed the cache's 4/);
  });
  for (const layer of cache) layer.dispose();
  model.dispose();
});

test('loading a reward model folder as a causal LM is a ConfigError', () => {
  assert.throws(() => loadCausalLM(path.join(HF, 'reward')), (e: unknown) => e instanceof ConfigError && /causal LM/.test((e as Error).message));
});

// ---------------------------------------------------------------------------------------------
// Scale: Pythia-70m's shapes with random weights.

test('Pythia-70m-shaped random weights: forward and backward on B1 T16, loss near ln(vocab)', async () => {
  await initGpu();
  const cfg = parseConfig({
    model_type: 'gpt_neox', vocab_size: 50304, hidden_size: 512, num_hidden_layers: 6, num_attention_heads: 8,
    intermediate_size: 2048, rotary_pct: 0.25, max_position_embeddings: 2048,
  }, 'pythia-70m-shaped');
  // N(0, 0.02) weights, as GPT-NeoX initialises: logits of std ~0.02·sqrt(512) ≈ 0.45, so the loss is ln V + ~0.1.
  const params = initParameters(cfg, 1);
  const model = new CausalLM(cfg, params);
  const ids = randInt(16, cfg.vocabSize, 5);
  const loss = await tidyAsync(async () => {
    const l = nextTokenLoss(model.tokenLogprobs(Tensor.fromArray(ids, [1, 16], 'i32')));
    backward(l);
    return l.item();
  });
  assert.ok(Math.abs(loss - Math.log(cfg.vocabSize)) < 0.25, `loss ${loss}, ln V = ${Math.log(cfg.vocabSize)}`);
  for (const name of ['gpt_neox.final_layer_norm.weight', 'gpt_neox.layers.0.attention.query_key_value.bias', 'gpt_neox.layers.5.mlp.dense_4h_to_h.bias']) {
    const g = await params.get(name).grad!.toArray();
    assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0), `${name}: gradient not finite or all zero`);
  }
  model.dispose();
});

test('16-bit weight storage: the same logits as f32 weights holding the same rounded values', async () => {
  for (const [kind, dtype] of [['gpt_neox', 'bf16'], ['mistral', 'f16']] as const) {
    // Re-save the fixture with its matrices rounded to 16 bits: loading that folder in f32 widens them exactly.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `juice-${dtype}-`));
    fs.copyFileSync(path.join(HF, kind, 'config.json'), path.join(dir, 'config.json'));
    const src = SafetensorsFile.open(path.join(HF, kind, 'model.safetensors'));
    const specs = modelParams(parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), 'config.json'));
    const out: Record<string, TensorToWrite> = {};
    for (const s of specs) {
      const matrix = s.role === 'weight' || s.role === 'embedding' || s.role === 'head';
      out[s.name] = { dtype: matrix ? (dtype === 'bf16' ? 'BF16' : 'F16') : 'F32', shape: s.shape, data: src.read(s.name) as Float32Array };
    }
    src.close();
    writeSafetensors(path.join(dir, 'model.safetensors'), out);
    const wide = loadCausalLM(dir), narrow16 = loadCausalLM(dir, { weightsDtype: dtype });
    assert.is(narrow16.params.get(specs[0].name).dtype, dtype);
    assert.is(narrow16.params.entries().length, specs.filter((s) => !['weight', 'embedding', 'head'].includes(s.role)).length);
    const ids = Tensor.fromArray(randInt(2 * 9, 100, 3), [2, 9], 'i32');
    const [a, b] = noGrad(() => [wide.forward(ids), narrow16.forward(ids)]);
    assertClose(await download(b), await download(a), 1e-6, `${kind} ${dtype} logits`);
    for (const t of [a, b, ids]) t.dispose();
    wide.params.dispose(); narrow16.params.dispose();
  }
});

test('initParameters: transformers\' init for both architectures: N(0, initializer_range) matrices, zero biases, unit norms', async () => {
  await initGpu();
  const neox = parseConfig({ model_type: 'gpt_neox', vocab_size: 64, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16 }, 'neox');
  const mistral = parseConfig({ model_type: 'mistral', vocab_size: 64, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, max_position_embeddings: 16 }, 'mistral');
  for (const cfg of [neox, mistral]) {
    const params = initParameters(cfg, 3, 0.05);
    assert.equal(params.specs.map((s) => s.name), modelParams(cfg).map((s) => s.name));
    for (const s of params.specs) {
      const v = Array.from(await params.get(s.name).toArray());
      if (s.role === 'norm') assert.ok(v.every((x) => x === 1), s.name);
      else if (s.role === 'bias') assert.ok(v.every((x) => x === 0), s.name);
      else {
        const mean = v.reduce((a, b) => a + b, 0) / v.length, std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
        assert.ok(Math.abs(mean) < 0.01 && Math.abs(std - 0.05) < 0.01, `${s.name}: mean ${mean}, std ${std}`);
      }
    }
    assert.is(params.entries().length, params.specs.length);
    params.dispose();
  }
  const again = [initParameters(neox, 3), initParameters(neox, 3)];
  assert.equal(await again[0].get('embed_out.weight').toArray(), await again[1].get('embed_out.weight').toArray());
  for (const p of again) p.dispose();
});

test('the table decides what trains: a frozen f32 reference, freeze and unfreeze by pattern, 16-bit is never trainable', async () => {
  await initGpu();
  const reference = loadCausalLM(path.join(HF, 'gpt_neox'), { frozen: true });
  assert.is(reference.params.get('embed_out.weight').dtype, 'f32');
  assert.is(reference.params.entries().length, 0);
  const logits = tidy(() => reference.forward(Tensor.fromArray([1, 2, 3], [1, 3], 'i32')).requiresGrad);
  assert.not.ok(logits, 'a frozen model records nothing to differentiate');
  reference.dispose();

  const model = loadCausalLM(path.join(HF, 'gpt_neox'));
  const all = model.params.specs.length;
  assert.is(model.params.entries().length, all);
  assert.is(model.params.freeze('gpt_neox.layers.*'), 2 * 12);
  assert.is(model.params.entries().length, all - 24);
  assert.not.ok(model.params.get('gpt_neox.layers.1.attention.dense.weight').requiresGrad);
  assert.is(model.params.unfreeze(/^gpt_neox\.layers\.1\.mlp\./), 4);
  assert.is(model.params.entries().length, all - 20);
  assert.ok(model.params.entries().every((e) => e.param.requiresGrad));
  assert.throws(() => model.params.freeze('lm_head.*'), /freeze\(lm_head\.\*\): matches no parameter/);
  // Gradients reach only what trains.
  tidy(() => backward(nextTokenLoss(model.tokenLogprobs(Tensor.fromArray([1, 2, 3, 4], [1, 4], 'i32')))));
  assert.is(model.params.get('gpt_neox.layers.0.attention.dense.weight').grad, null);
  assert.ok(model.params.get('gpt_neox.layers.1.mlp.dense_4h_to_h.bias').grad !== null);
  model.dispose();

  const half = loadCausalLM(path.join(HF, 'gpt_neox'), { weightsDtype: 'bf16' });
  assert.throws(() => half.params.unfreeze('embed_out.weight'), /'embed_out\.weight' \(bf16\) in 16-bit storage, which is frozen/);
  assert.is(half.params.unfreeze('*.bias'), half.params.specs.filter((s) => s.name.endsWith('.bias')).length);
  half.dispose();
  const spec = { ...modelParams(parseConfig({ model_type: 'gpt_neox', vocab_size: 4, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 8, max_position_embeddings: 4 }, 't'))[0] };
  assert.throws(() => new ParameterSet([spec], () => ({ dtype: 'f16', bits: new Uint16Array(32) })),
    /parameter 'gpt_neox\.embed_in\.weight' \[4, 8\] is f16 but the table says trainable/);
});

test.run();
