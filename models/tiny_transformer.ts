// A small pre-LN transformer (GPT-NeoX-like block, rotary positions, untied head) for the demo and the
// engine's end-to-end tests: embedding -> layers of [x + attn(ln1(x)), x + mlp(ln2(x))] -> ln_f -> head.
import { param, ParameterSet, type ParamSpec } from '../engine/params.ts';
import type { Tensor } from '../engine/tensor.ts';
import { add } from '../engine/ops/elementwise.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { layerNorm } from '../engine/ops/norms.ts';
import { linear } from '../engine/ops/matmul.ts';
import { gelu } from '../engine/ops/activations.ts';
import { rotary } from '../engine/ops/rotary.ts';
import { attention } from '../engine/ops/attention.ts';
import { narrow, permute, reshape } from '../engine/ops/shape.ts';
import { rng } from '../engine/random.ts';

export interface TinyTransformerConfig {
  vocabSize: number;
  hidden: number;
  heads: number;
  layers: number;
  intermediate: number;
  rotaryBase: number;
  eps: number;
}

export function tinyTransformerParams(c: TinyTransformerConfig): ParamSpec[] {
  const specs = [param('embed_in.weight', [c.vocabSize, c.hidden], 'embedding')];
  for (let l = 0; l < c.layers; l++) {
    const p = `layers.${l}.`;
    specs.push(
      param(`${p}input_layernorm.weight`, [c.hidden], 'norm'), param(`${p}input_layernorm.bias`, [c.hidden], 'bias'),
      param(`${p}attention.query_key_value.weight`, [3 * c.hidden, c.hidden], 'weight'), param(`${p}attention.query_key_value.bias`, [3 * c.hidden], 'bias'),
      param(`${p}attention.dense.weight`, [c.hidden, c.hidden], 'weight'), param(`${p}attention.dense.bias`, [c.hidden], 'bias'),
      param(`${p}post_attention_layernorm.weight`, [c.hidden], 'norm'), param(`${p}post_attention_layernorm.bias`, [c.hidden], 'bias'),
      param(`${p}mlp.dense_h_to_4h.weight`, [c.intermediate, c.hidden], 'weight'), param(`${p}mlp.dense_h_to_4h.bias`, [c.intermediate], 'bias'),
      param(`${p}mlp.dense_4h_to_h.weight`, [c.hidden, c.intermediate], 'weight'), param(`${p}mlp.dense_4h_to_h.bias`, [c.hidden], 'bias'),
    );
  }
  specs.push(param('final_layer_norm.weight', [c.hidden], 'norm'), param('final_layer_norm.bias', [c.hidden], 'bias'),
    param('embed_out.weight', [c.vocabSize, c.hidden], 'head'));
  return specs;
}

/** GPT-2 style initialisation: N(0, 0.02) weights, zero biases, unit norm scales. */
export function initTinyTransformer(c: TinyTransformerConfig, seed: number): ParameterSet {
  const next = rng(seed);
  return new ParameterSet(tinyTransformerParams(c), (s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.role === 'norm') return new Float32Array(n).fill(1);
    if (s.role === 'bias') return new Float32Array(n);
    return Float32Array.from({ length: n }, () => 0.02 * next.normal());
  });
}

/** ids: i32 [B, T] -> logits [B, T, vocab]. */
export function tinyTransformerForward(c: TinyTransformerConfig, p: ParameterSet, ids: Tensor): Tensor {
  const [B, T] = ids.shape;
  const H = c.heads, D = c.hidden / c.heads;
  let x = embedding(ids, p.get('embed_in.weight')); // [B, T, C]
  for (let l = 0; l < c.layers; l++) {
    const w = (n: string) => p.get(`layers.${l}.${n}`);
    const h = layerNorm(x, w('input_layernorm.weight'), w('input_layernorm.bias'), c.eps);
    const qkv = reshape(linear(h, w('attention.query_key_value.weight'), w('attention.query_key_value.bias')), [B * T * H, 3, D]);
    // GPT-NeoX layout: per head [q, k, v]; heads-major [B, H, T, D] for attention.
    const headsMajor = (i: number) => permute(reshape(narrow(qkv, 1, i, 1), [B, T, H, D]), [0, 2, 1, 3]);
    const q = rotary(headsMajor(0), { rotaryDims: D, base: c.rotaryBase });
    const k = rotary(headsMajor(1), { rotaryDims: D, base: c.rotaryBase });
    const a = attention(q, k, headsMajor(2), { causal: true }); // [B, H, T, D]
    const merged = reshape(permute(a, [0, 2, 1, 3]), [B, T, c.hidden]);
    x = add(x, linear(merged, w('attention.dense.weight'), w('attention.dense.bias')));
    const m = layerNorm(x, w('post_attention_layernorm.weight'), w('post_attention_layernorm.bias'), c.eps);
    x = add(x, linear(gelu(linear(m, w('mlp.dense_h_to_4h.weight'), w('mlp.dense_h_to_4h.bias'))), w('mlp.dense_4h_to_h.weight'), w('mlp.dense_4h_to_h.bias')));
  }
  const h = layerNorm(x, p.get('final_layer_norm.weight'), p.get('final_layer_norm.bias'), c.eps);
  return linear(h, p.get('embed_out.weight'));
}
