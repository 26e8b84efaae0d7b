// Initialisation of a model trained from scratch, transformers' _init_weights for GPT-NeoX and Mistral:
// Linear and Embedding weights ~ normal(0, initializer_range), biases 0, norm weights 1 (LayerNorm biases 0).
import { ParameterSet } from '../engine/params.ts';
import { numelOf } from '../engine/tensor.ts';
import { rng } from '../engine/random.ts';
import { modelParams, type ModelConfig } from './config.ts';

/** transformers' default initializer_range for both architectures. */
export const INITIALIZER_RANGE = 0.02;

/** The config's parameter table (modelParams), initialised from `seed`, every tensor in f32 and trainable. */
export function initParameters(config: ModelConfig, seed: number, initializerRange = INITIALIZER_RANGE): ParameterSet {
  const random = rng(seed);
  return new ParameterSet(modelParams(config), (s) => {
    const n = numelOf(s.shape);
    if (s.role === 'norm') return new Float32Array(n).fill(1);
    if (s.role === 'bias') return new Float32Array(n);
    return Float32Array.from({ length: n }, () => initializerRange * random.normal());
  });
}
