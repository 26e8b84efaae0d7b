// `juice generate`: the continuation of a prompt by a Hugging Face model folder (config.json, weights and
// tokenizer.json), then prompt and generation tokens per second. Generation itself is CausalLM.generate.
import { initGpu } from '../../engine/gpu.ts';
import { loadCausalLM } from '../../models/causal_lm.ts';
import { loadConfig } from '../../models/config.ts';
import { eosTokenIdsOf } from '../../models/generate.ts';
import { checkSamplingOptions } from '../../models/sampling.ts';
import { Tokenizer } from '../../models/tokenizer.ts';
import { choice, defineCommand, integer, number, path, string, UsageError } from '../options.ts';

function rate(tokens: number, seconds: number): string {
  return `${tokens} tokens in ${seconds.toFixed(3)} s, ${seconds > 0 ? (tokens / seconds).toFixed(1) : '-'} tokens/s`;
}

export const generate = defineCommand({
  name: 'generate',
  summary: 'KV-cache generation from a Hugging Face folder (config.json, safetensors, tokenizer.json): the continuation, then tokens per second',
  options: {
    model: path({ is: 'dir', required: true, help: 'the model folder: config.json, the weights and tokenizer.json' }),
    prompt: string({ required: true, help: 'the text to continue; with the new tokens at most max_position_embeddings tokens' }),
    'max-new-tokens': integer({ min: 0, max: 1e6, default: 32, help: 'tokens to generate at most (prompt + new tokens <= max_position_embeddings)' }),
    temperature: number({ min: 0, max: 100, default: 0, help: 'sampling temperature, 0 is greedy' }),
    'top-k': integer({ min: 0, max: 1e6, default: 0, help: 'sample among the K most likely tokens, 0 for all (needs --temperature > 0)' }),
    'top-p': number({ min: 0, minExclusive: true, max: 1, default: 1, help: 'nucleus sampling: the smallest set of tokens holding probability P (needs --temperature > 0)' }),
    seed: integer({ min: 0, max: 2 ** 32 - 1, default: 0, help: 'seed of the sampler' }),
    sampler: choice({ choices: ['gpu', 'host'], default: 'gpu', help: 'where tokens are chosen: on the GPU (B ids read back a step) or on the host (the logits read back)' }),
    stop: string({ multiple: true, help: 'stop when the continuation contains STR', metavar: 'STR' }),
    'weights-dtype': choice({ choices: ['f32', 'f16', 'bf16'], default: 'f32', help: 'dtype of the matrices on the GPU (f16, bf16: a 7B model in 14.5 GB)' }),
  },
  async run(o) {
    const sampling = { temperature: o.temperature, topK: o['top-k'], topP: o['top-p'] };
    if (o.temperature === 0 && (o['top-k'] !== 0 || o['top-p'] !== 1)) throw new UsageError('--top-k and --top-p shape sampling: they need --temperature > 0 (temperature 0 is greedy)');
    checkSamplingOptions(sampling);
    const config = loadConfig(o.model);
    const tokenizer = Tokenizer.fromFolder(o.model);
    const prompt = tokenizer.encode(o.prompt);
    if (prompt.length === 0) throw new UsageError(`--prompt '${o.prompt}' encodes to no tokens`);
    const limit = config.maxPositions;
    if (prompt.length > limit) throw new UsageError(`--prompt is ${prompt.length} tokens, longer than the model's ${limit} positions (max_position_embeddings)`);
    if (prompt.length + o['max-new-tokens'] > limit) {
      throw new UsageError(`--max-new-tokens ${o['max-new-tokens']}: the prompt's ${prompt.length} tokens and the new ones exceed the model's ${limit} positions (max_position_embeddings); at most ${limit - prompt.length}`);
    }
    await initGpu();
    const model = loadCausalLM(o.model, { weightsDtype: o['weights-dtype'] });
    try {
      const { rows: [row], timing, steps } = await model.generate([prompt], {
        ...sampling, maxNewTokens: o['max-new-tokens'], seed: o.seed, sampler: o.sampler, eosTokenIds: eosTokenIdsOf(model.config.eosTokenId), stopStrings: o.stop, decoder: tokenizer,
      });
      console.log(row.text);
      console.log(`\nprompt: ${rate(timing.promptTokens, timing.promptSeconds)}`);
      console.log(`generation: ${rate(timing.decodeTokens, timing.decodeSeconds)} after the first token (the prompt pass yields it); stopped by ${row.finish}; the host recorded a step in ${(timing.recordSeconds / Math.max(1, steps) * 1e3).toFixed(2)} ms`);
    } finally {
      model.dispose();
    }
    return 0;
  },
});
