// The parsed config.json of a model, on its own so that the parameter tables (gpt_neox_params.ts, mistral_params.ts)
// can name it without importing config.ts, which imports them: no import cycle, type-only or not.

export type ModelType = 'gpt_neox' | 'mistral';

export interface ModelConfig {
  modelType: ModelType;
  /** 'lm': ...ForCausalLM (next-token logits); 'score': ...ForSequenceClassification with one label (a reward model). */
  head: 'lm' | 'score';
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  /** Leading dims of each head that rotary rotates (rotate-half): transformers' int(headDim * partial_rotary_factor). */
  rotaryDims: number;
  ropeTheta: number;
  eps: number;
  maxPositions: number;
  /** Query i sees key j iff j <= i and i - j < slidingWindow; null: full causal. */
  slidingWindow: number | null;
  /** NeoX: x + attn(ln1(x)) + mlp(ln2(x)) when true, else x' = x + attn(ln1(x)); x' + mlp(ln2(x')). Mistral: false. */
  parallelResidual: boolean;
  tieWordEmbeddings: boolean;
  /** NeoX: exact (erf) GELU; Mistral: SiLU inside SwiGLU. */
  hiddenAct: 'gelu' | 'silu';
  /** NeoX: query_key_value and dense have biases; Mistral: never. */
  attentionBias: boolean;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  /** The reward head reads the last token that is not this one (transformers' rule). */
  padTokenId: number | null;
}
