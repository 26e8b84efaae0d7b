// Rollout tokens/s (models/rollout.ts) of a small byte-level GPT-NeoX at batch 1, 8 and 64, sampling on the host
// (B×V logits read back a step) and on the GPU (B ids read back a step), and their ratio, in one run.
// The model: ../shared/data/hh-byte-base/ (0.86M parameters) if present, else random weights at its config.
// Every row runs to maxNewTokens (no EOS), so both samplers generate the same number of tokens.
// Prints a table, then one JSON line.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { CausalLM, loadCausalLM } from '../models/causal_lm.ts';
import { loadConfig } from '../models/config.ts';
import { initParameters } from '../models/init.ts';
import { rollout, type RolloutOptions } from '../models/rollout.ts';

const MODEL_DIR = fileURLToPath(new URL('../../shared/data/hh-byte-base/', import.meta.url));
const CONFIG = {
  architectures: ['GPTNeoXForCausalLM'], model_type: 'gpt_neox', vocab_size: 260, hidden_size: 128, num_hidden_layers: 4,
  num_attention_heads: 4, intermediate_size: 512, hidden_act: 'gelu', rotary_pct: 0.25, rotary_emb_base: 10000,
  max_position_embeddings: 256, layer_norm_eps: 1e-5, use_parallel_residual: true, tie_word_embeddings: false,
  bos_token_id: 256, eos_token_id: 257, torch_dtype: 'float32',
};
const BATCHES = [1, 8, 64];
const PROMPTS_PER_BATCH: Record<number, number> = { 1: 4, 8: 8, 64: 64 };
const MAX_NEW_TOKENS = 32;
const SAMPLING = { temperature: 0.7, topK: 50, topP: 0.95, seed: 1 };

const QUESTIONS = [
  'How do I bake bread at home?', 'What is the capital of France?', 'Can you help me write a letter to my landlord?',
  'Why is the sky blue?', 'What should I cook for dinner tonight?', 'How can I learn to play the guitar?',
  'Tell me a joke about cats.', 'What are good exercises for back pain?',
];

/** Byte-level prompts in the HH format (the model's bytes are token ids 0..255). */
function prompts(n: number): Int32Array[] {
  return Array.from({ length: n }, (_, i) => Int32Array.from(Buffer.from(`\n\nHuman: ${QUESTIONS[i % QUESTIONS.length]}\n\nAssistant:`, 'utf8')));
}

function model(): { model: CausalLM; source: string } {
  if (existsSync(join(MODEL_DIR, 'model.safetensors'))) return { model: loadCausalLM(MODEL_DIR), source: 'hh-byte-base' };
  const dir = mkdtempSync(join(tmpdir(), 'juice-bench-rollout-'));
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
    const config = loadConfig(dir);
    return { model: new CausalLM(config, initParameters(config, 0)), source: 'random weights at the hh-byte-base config' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await initGpu();
  const { adapterInfo } = gpu();
  const device = `${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor})`;
  const { model: lm, source } = model();
  console.log(`device: ${device}; model: ${source}; ${MAX_NEW_TOKENS} new tokens a row; sampling ${JSON.stringify(SAMPLING)}`);
  const run = (batch: number, sampler: 'host' | 'gpu') => {
    const opts: RolloutOptions = { ...SAMPLING, maxNewTokens: MAX_NEW_TOKENS, batchSize: batch, sampler };
    return rollout(lm, prompts(PROMPTS_PER_BATCH[batch]), opts);
  };
  // Warm-up: every pipeline of every batch shape compiled before anything is timed.
  for (const batch of BATCHES) for (const sampler of ['host', 'gpu'] as const) await rollout(lm, prompts(batch), { ...SAMPLING, maxNewTokens: 2, batchSize: batch, sampler });
  const results = [];
  console.log('batch  prompts  host tokens/s  gpu tokens/s  gpu/host');
  for (const batch of BATCHES) {
    // Alternated twice, the faster of each kept: other processes share the CPU that lavapipe runs on.
    const best = { host: 0, gpu: 0 };
    for (let rep = 0; rep < 2; rep++) {
      for (const sampler of ['host', 'gpu'] as const) best[sampler] = Math.max(best[sampler], (await run(batch, sampler)).timing.tokensPerSecond);
    }
    const ratio = best.gpu / best.host;
    results.push({ batch, prompts: PROMPTS_PER_BATCH[batch], hostTokensPerSecond: +best.host.toFixed(1), gpuTokensPerSecond: +best.gpu.toFixed(1), gpuOverHost: +ratio.toFixed(3) });
    console.log(`${String(batch).padStart(5)}  ${String(PROMPTS_PER_BATCH[batch]).padStart(7)}  ${best.host.toFixed(1).padStart(13)}  ${best.gpu.toFixed(1).padStart(12)}  ${ratio.toFixed(2).padStart(8)}`);
  }
  lm.dispose();
  console.log(JSON.stringify({ bench: 'rollout', device, model: source, maxNewTokens: MAX_NEW_TOKENS, sampling: SAMPLING, results }));
  releaseGpu();
}

await main();
