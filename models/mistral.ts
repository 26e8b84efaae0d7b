// Mistral, after transformers' modeling_mistral.py: embed_tokens -> layers -> norm. A layer is pre-RMSNorm
// grouped-query attention (RoPE over whole heads, sliding window) and a SwiGLU MLP, added in sequence.
// No biases. Parameter names are the checkpoint's.
import type { ParameterSet } from '../engine/params.ts';
import type { Tensor } from '../engine/tensor.ts';
import { swiglu } from '../engine/ops/activations.ts';
import { add } from '../engine/ops/elementwise.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { linear } from '../engine/ops/matmul.ts';
import { rmsNorm } from '../engine/ops/norms.ts';
import { rotary } from '../engine/ops/rotary.ts';
import { permute, reshape } from '../engine/ops/shape.ts';
import type { ModelConfig } from './config.ts';
import { causalSelfAttention, rotaryPositions, type KVCache } from './self_attention.ts';

type Weights = (name: string) => Tensor;

/** MistralAttention: x [B, T, C] -> [B, T, C]; heads query kvHeads shared keys and values. */
function selfAttention(cfg: ModelConfig, w: Weights, x: Tensor, cache?: KVCache): Tensor {
  const [B, T] = x.shape;
  const D = cfg.headDim;
  const toHeads = (t: Tensor, heads: number) => permute(reshape(t, [B, T, heads, D]), [0, 2, 1, 3]); // [B, heads, T, D]
  const rope = { rotaryDims: D, base: cfg.ropeTheta, ...rotaryPositions(cache) };
  const q = rotary(toHeads(linear(x, w('self_attn.q_proj.weight')), cfg.heads), rope);
  const k = rotary(toHeads(linear(x, w('self_attn.k_proj.weight')), cfg.kvHeads), rope);
  const v = toHeads(linear(x, w('self_attn.v_proj.weight')), cfg.kvHeads);
  const out = causalSelfAttention(q, k, v, cfg.slidingWindow ?? 0, cache); // [B, H, T, D]
  return linear(reshape(permute(out, [0, 2, 1, 3]), [B, T, cfg.heads * D]), w('self_attn.o_proj.weight'));
}

/** MistralMLP: down_proj(silu(gate_proj(x)) * up_proj(x)). */
function mlp(w: Weights, x: Tensor): Tensor {
  return linear(swiglu(linear(x, w('mlp.gate_proj.weight')), linear(x, w('mlp.up_proj.weight'))), w('mlp.down_proj.weight'));
}

function layer(cfg: ModelConfig, w: Weights, x: Tensor, cache?: KVCache): Tensor {
  const h = add(x, selfAttention(cfg, w, rmsNorm(x, w('input_layernorm.weight'), cfg.eps), cache));
  return add(h, mlp(w, rmsNorm(h, w('post_attention_layernorm.weight'), cfg.eps)));
}

/** MistralModel: ids i32 [B, T] -> norm output [B, T, C]; with a cache (one per layer) the ids follow its tokens. */
export function mistralModel(cfg: ModelConfig, p: ParameterSet, ids: Tensor, cache?: KVCache[]): Tensor {
  let x = embedding(ids, p.get('model.embed_tokens.weight')); // [B, T, C]
  for (let l = 0; l < cfg.layers; l++) x = layer(cfg, (n) => p.get(`model.layers.${l}.${n}`), x, cache?.[l]);
  return rmsNorm(x, p.get('model.norm.weight'), cfg.eps);
}

/** MistralForCausalLM's output head [V, C]: lm_head, or embed_tokens when tied. */
export function mistralLmHead(cfg: ModelConfig, p: ParameterSet): Tensor {
  return p.get(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
}
