// GPT-NeoX (Pythia) parameters with their on-disk names and shapes, in transformers' module order.
import { param, type ParamSpec } from '../engine/params.ts';
import type { ModelConfig } from './config_types.ts';

/** Embedding, layers and final layernorm: everything but the output head. */
export function gptNeoxTrunkParams(c: ModelConfig): ParamSpec[] {
  const specs = [param('gpt_neox.embed_in.weight', [c.vocabSize, c.hidden], 'embedding')];
  for (let l = 0; l < c.layers; l++) {
    const p = `gpt_neox.layers.${l}.`;
    specs.push(
      param(`${p}input_layernorm.weight`, [c.hidden], 'norm'), param(`${p}input_layernorm.bias`, [c.hidden], 'bias'),
      param(`${p}post_attention_layernorm.weight`, [c.hidden], 'norm'), param(`${p}post_attention_layernorm.bias`, [c.hidden], 'bias'),
      // rows grouped per head: [head][q, k, v][headDim]
      param(`${p}attention.query_key_value.weight`, [3 * c.hidden, c.hidden], 'weight'),
      ...(c.attentionBias ? [param(`${p}attention.query_key_value.bias`, [3 * c.hidden], 'bias')] : []),
      param(`${p}attention.dense.weight`, [c.hidden, c.hidden], 'weight'),
      ...(c.attentionBias ? [param(`${p}attention.dense.bias`, [c.hidden], 'bias')] : []),
      param(`${p}mlp.dense_h_to_4h.weight`, [c.intermediate, c.hidden], 'weight'), param(`${p}mlp.dense_h_to_4h.bias`, [c.intermediate], 'bias'),
      param(`${p}mlp.dense_4h_to_h.weight`, [c.hidden, c.intermediate], 'weight'), param(`${p}mlp.dense_4h_to_h.bias`, [c.hidden], 'bias'),
    );
  }
  specs.push(param('gpt_neox.final_layer_norm.weight', [c.hidden], 'norm'), param('gpt_neox.final_layer_norm.bias', [c.hidden], 'bias'));
  return specs;
}

/** GPTNeoXForCausalLM: the trunk and `embed_out` (transformers calls it lm_head in memory); tied: no head on disk. */
export function gptNeoxParams(c: ModelConfig): ParamSpec[] {
  const trunk = gptNeoxTrunkParams(c);
  return c.tieWordEmbeddings ? trunk : [...trunk, param('embed_out.weight', [c.vocabSize, c.hidden], 'head')];
}
