// Mistral, after transformers' modeling_mistral.py: embed_tokens -> layers -> norm. A layer is pre-RMSNorm
// grouped-query attention (RoPE over whole heads, sliding window) and a SwiGLU MLP, added in sequence.
// No biases. Parameter names are the checkpoint's; every Linear goes through `linear` of the layer (a LoRA
// adapter is added where the parameter table holds one, models/lora.ts). Decoding on the cache's fused path groups
// a layer's products where it can (`group`): q, k and v in one product, gate, up and SwiGLU in another, the same
// bits in 8 dispatches a layer instead of 12.
import { autocastF16, checkpoint } from '../engine/autodiff.ts';
import type { ParameterSet } from '../engine/params.ts';
import type { Tensor } from '../engine/tensor.ts';
import { swiglu } from '../engine/ops/activations.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { linearGroup, type LinearGroupForm } from '../engine/ops/matmul.ts';
import { rmsNorm } from '../engine/ops/norms.ts';
import { permute, reshape } from '../engine/ops/shape.ts';
import type { ModelConfig } from './config.ts';
import { loraNames, projections, type LoraState } from './lora.ts';
import { rotarySelfAttention, type KVCache } from './self_attention.ts';

/**
 * One layer's parameters: w(name) a tensor, linear(x, module, residual) its Linear `module` (plus its adapter, if
 * any), plus the residual where given; group(x, modules, form) the modules' products in one dispatch
 * (linearGroup), or null where that does not apply: then the caller takes `linear` for each.
 */
interface Layer {
  w: (name: string) => Tensor;
  linear: (x: Tensor, module: string, residual?: Tensor) => Tensor;
  group: (x: Tensor, modules: readonly string[], form: LinearGroupForm) => Tensor | null;
}

/** residual + MistralAttention(x): x and residual [B, T, C] -> [B, T, C]; heads query kvHeads shared keys and values. */
function selfAttention(cfg: ModelConfig, { linear, group }: Layer, x: Tensor, residual: Tensor, cache?: KVCache): Tensor {
  const [B, T] = x.shape;
  // q [B, T, H·D], k and v [B, T, KVH·D], or the three side by side [B, T, (H + 2·KVH)·D]; RoPE over whole heads (rotaryDims = D).
  const qkv = cache?.fusedRotary ? group(x, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], 'concatenated') : null;
  const proj = qkv ? { concatenated: qkv } : { q: linear(x, 'self_attn.q_proj'), k: linear(x, 'self_attn.k_proj'), v: linear(x, 'self_attn.v_proj') };
  const out = rotarySelfAttention(cfg, proj, cfg.slidingWindow ?? 0, cache); // [B, H, T, D]
  return linear(reshape(permute(out, [0, 2, 1, 3]), [B, T, cfg.heads * cfg.headDim]), 'self_attn.o_proj', residual);
}

/** residual + MistralMLP(x): down_proj(silu(gate_proj(x)) * up_proj(x)), the first three in one product where `group` can. */
function mlp({ linear, group }: Layer, x: Tensor, residual: Tensor, cache?: KVCache): Tensor {
  const gated = (cache?.fusedRotary ? group(x, ['mlp.gate_proj', 'mlp.up_proj'], 'swiglu') : null) ?? swiglu(linear(x, 'mlp.gate_proj'), linear(x, 'mlp.up_proj'));
  return linear(gated, 'mlp.down_proj', residual);
}

// The residual adds happen in the output projections' stores (o_proj and down_proj take the residual). The cache's
// fused path (KVCache.fusedRotary) groups the products; its reference path keeps them separate.
function layer(cfg: ModelConfig, L: Layer, x: Tensor, cache?: KVCache): Tensor {
  const h = selfAttention(cfg, L, rmsNorm(x, L.w('input_layernorm.weight'), cfg.eps), x, cache); // x + attn(norm(x))
  return mlp(L, rmsNorm(h, L.w('post_attention_layernorm.weight'), cfg.eps), h, cache); // h + mlp(norm(h))
}

/**
 * MistralModel: ids i32 [B, T] -> norm output [B, T, C]; with a cache (one per layer) the ids follow its tokens.
 * `lora`: the adapters' settings, needed when the table holds adapters. `checkpointLayers`: the tape keeps each
 * layer's input only and replays the layer in the backward (engine/autodiff.ts checkpoint).
 */
export function mistralModel(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[], lora?: LoraState, checkpointLayers = false): Tensor {
  const project = projections(p, lora);
  // Grouped products are the base products alone: not for modules with an adapter, nor inside autocast (whose
  // products read f16 copies).
  const group = (prefix: string) => (a: Tensor, modules: readonly string[], form: LinearGroupForm) =>
    autocastF16() || modules.some((m) => p.tensors.has(loraNames(prefix + m).a)) ? null : linearGroup(a, modules.map((m) => p.get(`${prefix}${m}.weight`)), form);
  let x = embedding(ids, p.get('model.embed_tokens.weight')); // [B, T, C]
  for (let l = 0; l < cfg.layers; l++) {
    const prefix = `model.layers.${l}.`;
    const L: Layer = { w: (n) => p.get(prefix + n), linear: (a, module, residual) => project(a, prefix + module, undefined, { residual }), group: group(prefix) };
    const block = (h: Tensor) => layer(cfg, L, h, cache?.[l]);
    x = checkpointLayers ? checkpoint(block, x) : block(x);
  }
  return rmsNorm(x, p.get('model.norm.weight'), cfg.eps);
}

/** MistralForCausalLM's output head [V, C]: lm_head, or embed_tokens when tied. */
export function mistralLmHead(cfg: ModelConfig, p: ParameterSet): Tensor {
  return p.get(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
}
