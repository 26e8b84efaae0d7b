// Mistral parameters with their on-disk names and shapes, in transformers' module order.
import { param, type ParamSpec } from '../engine/params.ts';
import type { ModelConfig } from './config_types.ts';

/** Embedding, layers and final RMSNorm: everything but the output head. */
export function mistralTrunkParams(c: ModelConfig): ParamSpec[] {
  const qWidth = c.heads * c.headDim, kvWidth = c.kvHeads * c.headDim;
  const specs = [param('model.embed_tokens.weight', [c.vocabSize, c.hidden], 'embedding')];
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      param(`${p}self_attn.q_proj.weight`, [qWidth, c.hidden], 'weight'),
      param(`${p}self_attn.k_proj.weight`, [kvWidth, c.hidden], 'weight'),
      param(`${p}self_attn.v_proj.weight`, [kvWidth, c.hidden], 'weight'),
      param(`${p}self_attn.o_proj.weight`, [c.hidden, qWidth], 'weight'),
      param(`${p}mlp.gate_proj.weight`, [c.intermediate, c.hidden], 'weight'),
      param(`${p}mlp.up_proj.weight`, [c.intermediate, c.hidden], 'weight'),
      param(`${p}mlp.down_proj.weight`, [c.hidden, c.intermediate], 'weight'),
      param(`${p}input_layernorm.weight`, [c.hidden], 'norm'),
      param(`${p}post_attention_layernorm.weight`, [c.hidden], 'norm'),
    );
  }
  specs.push(param('model.norm.weight', [c.hidden], 'norm'));
  return specs;
}

/** MistralForCausalLM: the trunk and `lm_head` (absent on disk when tied to the embedding). */
export function mistralParams(c: ModelConfig): ParamSpec[] {
  const trunk = mistralTrunkParams(c);
  return c.tieWordEmbeddings ? trunk : [...trunk, param('lm_head.weight', [c.vocabSize, c.hidden], 'head')];
}
