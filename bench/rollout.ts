// Rollout tokens/s (models/rollout.ts) of a small byte-level GPT-NeoX at batch 1, 8 and 64, alternated in one run:
// sampling on the host (B×V logits read back a step) and on the GPU (B ids read back a step), and on the GPU with
// the training path's split, rotary and cache copies instead of the fused kernel (KVCache fusedRotary false), and on
// the GPU unpipelined (each step's ids read back before the next step is recorded: GenerationOptions pipelined
// false); the ratios GPU / host, fused / unfused and pipelined / unpipelined, the host's recording time a step (GPU
// sampling: where it nears the time a step, decoding is host-bound), and the dispatches of one decode step,
// by op, unfused and fused. Then joins: 32 prompts, 8 rows in flight, each row stopping at the bytes 'y', 'b' or 'f'
// (a stand-in EOS: 4% of hh-byte-base's tokens, so that lengths spread up to the 64 allowed, where the model's own
// EOS and '\n\nHuman:' rarely come within 64 tokens), by rollout (prompts join the
// batch as it compacts) against the same prompts in fixed batches of 8 one after another (generate per batch, as
// rollout ran before joins), alternated; the rows' tokens are the same in both (the GPU sampler's row ids).
// The model: ../shared/data/hh-byte-base/ (0.86M parameters) if present, else random weights at its config.
// In the first table every row runs to maxNewTokens (no EOS), so both samplers generate the same number of tokens.
// Prints a table, then one JSON line. Usage: node --import tsx bench/rollout.ts [--reps N] (alternations, default 2)
// [--joins-only] (the joins case alone).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
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
/** The joins case: prompts, rows in flight, new tokens at most, the stand-in EOS bytes (rows stop at different lengths). */
const JOINS = { prompts: 32, batch: 8, maxNewTokens: 64, eos: [...'ybf'].map((c) => c.charCodeAt(0)) };
const SAMPLING = { temperature: 0.7, topK: 50, topP: 0.95, seed: 1 };
/** The arms: host sampling, GPU sampling, GPU sampling on the unfused (reference) cache path, GPU sampling unpipelined. */
const ARMS = { host: { sampler: 'host' }, gpu: { sampler: 'gpu', pipelined: true }, unfused: { sampler: 'gpu', fusedRotary: false, pipelined: true }, unpipelined: { sampler: 'gpu', pipelined: false } } as const;
type Arm = keyof typeof ARMS;

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

/** Rollout with joins against fixed batches run one after another: tokens/s (the faster of `reps`), model steps. */
async function joinsCase(lm: CausalLM, reps: number) {
  const opts = { ...SAMPLING, maxNewTokens: JOINS.maxNewTokens, eosTokenIds: JOINS.eos };
  const ps = prompts(JOINS.prompts);
  const order = ps.map((_, i) => i).sort((a, b) => ps[b].length - ps[a].length || a - b);
  const arms = {
    joins: async () => {
      const { rows, timing } = await rollout(lm, ps, { ...opts, batchSize: JOINS.batch });
      return { seconds: timing.seconds, steps: timing.steps, tokens: rows.map((r) => r.tokens) };
    },
    batches: async () => {
      const tokens = new Array<number[]>(ps.length);
      let steps = 0;
      const start = performance.now();
      for (let first = 0; first < order.length; first += JOINS.batch) {
        const members = order.slice(first, first + JOINS.batch);
        const g = await lm.generate(members.map((i) => ps[i]), { ...opts, rowIds: members });
        g.rows.forEach((row, j) => { tokens[members[j]] = row.tokens; });
        steps += g.steps;
      }
      return { seconds: (performance.now() - start) / 1000, steps, tokens };
    },
  };
  const best = { joins: { tokensPerSecond: 0, steps: 0 }, batches: { tokensPerSecond: 0, steps: 0 } };
  let same = true, generated = 0, lengths = new Set<number>();
  const ratios: number[] = []; // joins / batches, rep by rep
  await arms.joins(); // warm-up: the joins' shapes compiled
  for (let rep = 0; rep < reps; rep++) {
    const runs = { joins: await arms.joins(), batches: await arms.batches() };
    same &&= JSON.stringify(runs.joins.tokens) === JSON.stringify(runs.batches.tokens);
    generated = runs.joins.tokens.reduce((n, t) => n + t.length, 0);
    lengths = new Set(runs.joins.tokens.map((t) => t.length));
    ratios.push(+(runs.batches.seconds / runs.joins.seconds).toFixed(3));
    for (const arm of ['joins', 'batches'] as const) {
      const rate = generated / runs[arm].seconds;
      if (rate > best[arm].tokensPerSecond) best[arm] = { tokensPerSecond: +rate.toFixed(1), steps: runs[arm].steps };
    }
  }
  const ratio = +(best.joins.tokensPerSecond / best.batches.tokensPerSecond).toFixed(3);
  console.log(`joins: ${JOINS.prompts} prompts, ${JOINS.batch} rows in flight, up to ${JOINS.maxNewTokens} tokens to a stand-in EOS (${generated} generated, ${lengths.size} lengths): `
    + `joining ${best.joins.tokensPerSecond} tokens/s in ${best.joins.steps} steps, fixed batches ${best.batches.tokensPerSecond} in ${best.batches.steps}: ${ratio}x (rep by rep ${ratios.join(', ')}); same tokens: ${same}`);
  return { ...JOINS, generated, joins: best.joins, batches: best.batches, joinsOverBatches: ratio, joinsOverBatchesByRep: ratios, sameTokens: same };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 2;
  if (!Number.isSafeInteger(reps) || reps < 1) throw new Error(`--reps ${args[args.indexOf('--reps') + 1]}: expected a positive integer`);
  await initGpu();
  const { adapterInfo } = gpu();
  const device = `${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor})`;
  const { model: lm, source } = model();
  console.log(`device: ${device}; model: ${source}; ${MAX_NEW_TOKENS} new tokens a row; sampling ${JSON.stringify(SAMPLING)}`);
  const run = (batch: number, arm: Arm, count = PROMPTS_PER_BATCH[batch], maxNewTokens = MAX_NEW_TOKENS) => {
    const opts: RolloutOptions = { ...SAMPLING, ...ARMS[arm], maxNewTokens, batchSize: batch };
    return rollout(lm, prompts(count), opts);
  };
  // Warm-up: every pipeline of every batch shape compiled before anything is timed.
  for (const batch of BATCHES) for (const arm of Object.keys(ARMS) as Arm[]) await run(batch, arm, batch, 2);
  // One decode step's dispatches: a generation of 3 tokens less one of 2 (a prompt pass and 1 or 2 decode steps).
  const decodeStep = async (arm: Arm) => {
    const byOp = async (maxNewTokens: number) => { ledger.reset(); await run(1, arm, 1, maxNewTokens); return new Map(ledger.byOp().map((r) => [r.key, r.dispatches])); };
    const [two, three] = [await byOp(2), await byOp(3)];
    const step: Record<string, number> = {};
    for (const [op, n] of three) if (n > (two.get(op) ?? 0)) step[op] = n - (two.get(op) ?? 0);
    return step;
  };
  const dispatches = { unfused: await decodeStep('unfused'), fused: await decodeStep('gpu') };
  for (const [arm, ops] of Object.entries(dispatches)) {
    const total = Object.values(ops).reduce((a, b) => a + b, 0);
    console.log(`dispatches per decode step, ${arm}: ${total} (${Object.entries(ops).map(([op, n]) => `${op} ${n}`).join(', ')})`);
  }
  const results = [];
  console.log('batch  prompts  host tokens/s  gpu unfused tokens/s  gpu unpipelined tokens/s  gpu tokens/s  gpu/host  fused/unfused  pipelined/unpipelined  gpu: host records a step (ms)');
  for (const batch of args.includes('--joins-only') ? [] : BATCHES) {
    // Alternated `reps` times, the faster of each kept: other processes share the CPU that lavapipe runs on.
    const best: Record<Arm, number> = { host: 0, gpu: 0, unfused: 0, unpipelined: 0 };
    let recordMsPerStep = 0; // the host's recording of a step, in the fastest GPU-sampled (pipelined, fused) run
    for (let rep = 0; rep < reps; rep++) {
      for (const arm of Object.keys(ARMS) as Arm[]) {
        const { timing } = await run(batch, arm);
        if (arm === 'gpu' && timing.tokensPerSecond > best.gpu) recordMsPerStep = (timing.recordSeconds / timing.steps) * 1e3;
        best[arm] = Math.max(best[arm], timing.tokensPerSecond);
      }
    }
    const ratio = best.gpu / best.host, fusion = best.gpu / best.unfused, pipelining = best.gpu / best.unpipelined;
    results.push({
      batch, prompts: PROMPTS_PER_BATCH[batch], hostTokensPerSecond: +best.host.toFixed(1), gpuUnfusedTokensPerSecond: +best.unfused.toFixed(1),
      gpuUnpipelinedTokensPerSecond: +best.unpipelined.toFixed(1), gpuTokensPerSecond: +best.gpu.toFixed(1), gpuOverHost: +ratio.toFixed(3),
      fusedOverUnfused: +fusion.toFixed(3), pipelinedOverUnpipelined: +pipelining.toFixed(3), gpuRecordMsPerStep: +recordMsPerStep.toFixed(3),
    });
    console.log(`${String(batch).padStart(5)}  ${String(PROMPTS_PER_BATCH[batch]).padStart(7)}  ${best.host.toFixed(1).padStart(13)}  ${best.unfused.toFixed(1).padStart(20)}  ${best.unpipelined.toFixed(1).padStart(24)}  ${best.gpu.toFixed(1).padStart(12)}  ${ratio.toFixed(2).padStart(8)}  ${fusion.toFixed(2).padStart(13)}  ${pipelining.toFixed(2).padStart(21)}  ${recordMsPerStep.toFixed(2).padStart(29)}`);
  }
  const joins = await joinsCase(lm, reps);
  lm.dispose();
  console.log(JSON.stringify({ bench: 'rollout', device, model: source, reps, maxNewTokens: MAX_NEW_TOKENS, sampling: SAMPLING, dispatchesPerDecodeStep: dispatches, results, joins }));
  releaseGpu();
}

await main();
