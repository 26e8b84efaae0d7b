// `juice generate`: the continuation of a prompt by a Hugging Face model folder (config.json, weights and
// tokenizer.json), then prompt and generation tokens per second. Generation itself is CausalLM.generate.
import { parseArgs } from 'node:util';
import { initGpu } from '../engine/gpu.ts';
import { loadCausalLM } from './causal_lm.ts';
import { checkSamplingOptions } from './sampling.ts';
import { Tokenizer } from './tokenizer.ts';

const USAGE = `usage: juice generate --model DIR --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --seed S --stop STR --weights-dtype f32|f16|bf16]
  DIR holds config.json, the weights and tokenizer.json; temperature 0 (the default) is greedy; --stop may repeat;
  --weights-dtype f16 or bf16 keeps the matrices in 16 bits on the GPU (a 7B model in 14.5 GB).`;

const NUMBER_OPTIONS = ['max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed'] as const;

/** The config's eos_token_id as a list. */
export function eosTokenIdsOf(eos: number | number[] | null): number[] {
  return eos === null ? [] : Array.isArray(eos) ? eos : [eos];
}

function rate(tokens: number, seconds: number): string {
  return `${tokens} tokens in ${seconds.toFixed(3)} s, ${seconds > 0 ? (tokens / seconds).toFixed(1) : '-'} tokens/s`;
}

/** Prints the continuation of --prompt (stopping at the config's EOS or a --stop string), then the rates. */
export async function generateCommand(args: string[]): Promise<number> {
  const fail = (message: string) => { console.error(`juice generate: ${message}\n${USAGE}`); return 2; };
  let values;
  try {
    ({ values } = parseArgs({ args, options: {
      model: { type: 'string' }, prompt: { type: 'string' }, 'max-new-tokens': { type: 'string', default: '32' },
      temperature: { type: 'string', default: '0' }, 'top-k': { type: 'string', default: '0' }, 'top-p': { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' }, stop: { type: 'string', multiple: true, default: [] },
      'weights-dtype': { type: 'string', default: 'f32' },
    } }));
  } catch (e) {
    return fail((e as Error).message);
  }
  if (values.model === undefined || values.prompt === undefined) return fail('--model and --prompt are required');
  const bad = NUMBER_OPTIONS.find((name) => values[name].trim() === '' || !Number.isFinite(Number(values[name])));
  if (bad) return fail(`--${bad} must be a number, got '${values[bad]}'`);
  const [maxNewTokens, temperature, topK, topP, seed] = NUMBER_OPTIONS.map((name) => Number(values[name]));
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) return fail(`--max-new-tokens must be a non-negative integer, got ${maxNewTokens}`);
  const sampling = { temperature, topK, topP };
  try {
    checkSamplingOptions(sampling);
  } catch (e) {
    return fail((e as Error).message);
  }
  const weightsDtype = values['weights-dtype'];
  if (weightsDtype !== 'f32' && weightsDtype !== 'f16' && weightsDtype !== 'bf16') return fail(`--weights-dtype must be f32, f16 or bf16, got '${weightsDtype}'`);
  const tokenizer = Tokenizer.fromFolder(values.model);
  const prompt = tokenizer.encode(values.prompt);
  if (prompt.length === 0) return fail(`the prompt '${values.prompt}' encodes to no tokens`);
  await initGpu();
  const model = loadCausalLM(values.model, { weightsDtype });
  try {
    const { rows: [row], timing } = await model.generate([prompt], {
      ...sampling, maxNewTokens, seed, eosTokenIds: eosTokenIdsOf(model.config.eosTokenId), stopStrings: values.stop, decoder: tokenizer,
    });
    console.log(row.text);
    console.log(`\nprompt: ${rate(timing.promptTokens, timing.promptSeconds)}`);
    console.log(`generation: ${rate(timing.decodeTokens, timing.decodeSeconds)} after the first token (the prompt pass yields it); stopped by ${row.finish}`);
  } finally {
    model.dispose();
  }
  return 0;
}
