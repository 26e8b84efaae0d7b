// The optimizer's part of a training step over a model's whole parameter table: the gradient norm's partial sums and
// AdamW's update (train/step.ts runs both every step), ms a step and dispatches a step. The demo's tiny GPT-NeoX
// (28 tensors, 0.1M parameters: where the count of dispatches is the cost) and Pythia-160m (148 tensors, 162M: where
// the bytes are). Each step waits for the device, as a training step does before its update.
// Parameters and gradients are zeros (the update's cost does not depend on the values), so that nothing large is made
// on the host. Prints one line a case, then one JSON line. Usage: node --import tsx bench/optimizer.ts [--steps N]
// [--small] (the demo's table only; also with JUICE_BENCH_SMALL=1, bench/gpu_session.sh's dry run)
import { parseArgs } from 'node:util';
import { initGpu, releaseGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { gradNormSquared } from '../engine/ops/grad_norm.ts';
import { AdamW } from '../engine/optim.ts';
import { flush, sync } from '../engine/runtime.ts';
import { Tensor } from '../engine/tensor.ts';
import { modelParams, parseConfig, type ModelConfig } from '../models/config.ts';
import { DEMO_CONFIG } from '../train/demo.ts';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '30' }, small: { type: 'boolean', default: false } } });
const steps = Number(values.steps);
const small = values.small || process.env.JUICE_BENCH_SMALL === '1';
if (!Number.isSafeInteger(steps) || steps < 3) throw new Error(`--steps ${values.steps}: expected an integer >= 3`);

const PYTHIA_160M = parseConfig({
  model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], vocab_size: 50304, hidden_size: 768, num_hidden_layers: 12,
  num_attention_heads: 12, intermediate_size: 3072, rotary_pct: 0.25, rotary_emb_base: 10000, layer_norm_eps: 1e-5,
  max_position_embeddings: 2048, use_parallel_residual: true, tie_word_embeddings: false, hidden_act: 'gelu',
}, 'Pythia-160m config');

await initGpu();
const results: Record<string, unknown>[] = [];
for (const [name, cfg] of [['demo GPT-NeoX', DEMO_CONFIG], ['Pythia-160m', PYTHIA_160M]] as [string, ModelConfig][]) {
  if (small && name === 'Pythia-160m') continue;
  const entries = modelParams(cfg).map((spec) => {
    const param = Tensor.zeros(spec.shape).keep();
    param.grad = Tensor.zeros(spec.shape).keep();
    return { name: spec.name, param, decay: spec.decay };
  });
  const opt = new AdamW(entries, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  const stats = Tensor.zeros([1]).keep();
  const times: number[] = [];
  let dispatches = 0;
  for (let s = 0; s < steps; s++) {
    ledger.reset();
    await sync();
    const t0 = performance.now();
    gradNormSquared(entries.map((e) => e.param.grad!), stats, 0);
    opt.step(0.5);
    flush();
    await sync();
    times.push(performance.now() - t0);
    dispatches = ledger.all().reduce((n, e) => n + e.dispatches, 0); // the last step's: the first also fills the states
  }
  const timed = times.slice(2).sort((a, b) => a - b); // the first steps compile pipelines and allocate the states
  const median = timed[timed.length >> 1];
  const parameters = entries.reduce((n, e) => n + e.param.numel, 0);
  console.log(`${name}: ${entries.length} tensors, ${parameters} parameters: ${median.toFixed(3)} ms a step (median of ${timed.length}, min ${timed[0].toFixed(3)}), ${dispatches} dispatches a step`);
  results.push({ case: name, tensors: entries.length, parameters, ms: median, dispatches });
  opt.dispose();
  stats.dispose();
  for (const { param } of entries) { param.grad!.dispose(); param.dispose(); }
}
console.log(JSON.stringify({ optimizer: results }));
releaseGpu();
process.exit(0);
