// GPT-NeoX (Pythia), after transformers' modeling_gpt_neox.py: embed_in -> layers -> final_layer_norm. A layer
// is pre-LN attention and MLP, added to the residual in parallel (Pythia) or in sequence. Parameter names are
// the checkpoint's; the causal LM's head is embed_out (lm_head in transformers' memory). Every Linear goes
// through `linear` of the layer (a LoRA adapter is added where the parameter table holds one, models/lora.ts).
import { checkpoint } from '../engine/autodiff.ts';
import type { ParameterSet } from '../engine/params.ts';
import type { Tensor } from '../engine/tensor.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { layerNorm, layerNormPair } from '../engine/ops/norms.ts';
import { permute, reshape } from '../engine/ops/shape.ts';
import type { ModelConfig } from './config.ts';
import { projections, type LoraState, type Projection } from './lora.ts';
import { rotarySelfAttention, type KVCache } from './self_attention.ts';

/**
 * One layer's parameters: w(name) a tensor, linear(x, module, bias, { residual, activation }) its Linear `module`
 * (plus its adapter, if any), then the activation and the residual where given.
 */
interface Layer { w: (name: string) => Tensor; linear: Projection }

/** residual + GPTNeoXAttention(x): x and residual [B, T, C] -> [B, T, C]. */
function selfAttention(cfg: ModelConfig, { w, linear }: Layer, x: Tensor, residual: Tensor, cache?: KVCache): Tensor {
  const [B, T] = x.shape;
  const bias = (name: string) => (cfg.attentionBias ? w(name) : undefined);
  const qkv = linear(x, 'attention.query_key_value', bias('attention.query_key_value.bias')); // [B, T, H·3·D], [head][q, k, v][D]
  const out = rotarySelfAttention(cfg, { qkv }, 0, cache); // [B, H, T, D], the first rotaryDims of each head rotated
  return linear(reshape(permute(out, [0, 2, 1, 3]), [B, T, cfg.hidden]), 'attention.dense', bias('attention.dense.bias'), { residual });
}

/** residual + GPTNeoXMLP(x): dense_4h_to_h(gelu(dense_h_to_4h(x))), exact (erf) GELU. */
function mlp({ w, linear }: Layer, x: Tensor, residual: Tensor): Tensor {
  const h = linear(x, 'mlp.dense_h_to_4h', w('mlp.dense_h_to_4h.bias'), { activation: 'gelu' }); // [B, T, intermediate]
  return linear(h, 'mlp.dense_4h_to_h', w('mlp.dense_4h_to_h.bias'), { residual });
}

// The residual adds happen in the output projections' stores (dense and dense_4h_to_h take the residual); the
// parallel residual's two norms of x run as one kernel.
function layer(cfg: ModelConfig, L: Layer, x: Tensor, cache?: KVCache): Tensor {
  const { w } = L;
  const ln1 = [w('input_layernorm.weight'), w('input_layernorm.bias')] as const;
  const ln2 = [w('post_attention_layernorm.weight'), w('post_attention_layernorm.bias')] as const;
  if (cfg.parallelResidual) { // x + attn(ln1(x)) + mlp(ln2(x))
    const [a, m] = layerNormPair(x, ln1, ln2, cfg.eps);
    return mlp(L, m, selfAttention(cfg, L, a, x, cache));
  }
  const h = selfAttention(cfg, L, layerNorm(x, ...ln1, cfg.eps), x, cache); // x + attn(ln1(x))
  return mlp(L, layerNorm(h, ...ln2, cfg.eps), h); // h + mlp(ln2(h))
}

/**
 * GPTNeoXModel: ids i32 [B, T] -> final_layer_norm output [B, T, C]; with a cache (one per layer) the ids follow
 * its tokens. `lora`: the adapters' settings, needed when the table holds adapters. `checkpointLayers`: the tape
 * keeps each layer's input only and replays the layer in the backward (engine/autodiff.ts checkpoint).
 */
export function gptNeoxModel(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[], lora?: LoraState, checkpointLayers = false): Tensor {
  const project = projections(p, lora);
  let x = embedding(ids, p.get('gpt_neox.embed_in.weight')); // [B, T, C]
  for (let l = 0; l < cfg.layers; l++) {
    const prefix = `gpt_neox.layers.${l}.`;
    const block = (h: Tensor) => layer(cfg, { w: (n) => p.get(prefix + n), linear: (a, module, bias, opts) => project(a, prefix + module, bias, opts) }, h, cache?.[l]);
    x = checkpointLayers ? checkpoint(block, x) : block(x);
  }
  return layerNorm(x, p.get('gpt_neox.final_layer_norm.weight'), p.get('gpt_neox.final_layer_norm.bias'), cfg.eps);
}

/** GPTNeoXForCausalLM's output head [V, C]: embed_out, or embed_in when tied. */
export function gptNeoxLmHead(cfg: ModelConfig, p: ParameterSet): Tensor {
  return p.get(cfg.tieWordEmbeddings ? 'gpt_neox.embed_in.weight' : 'embed_out.weight');
}
