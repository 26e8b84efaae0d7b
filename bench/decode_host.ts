// The host's side of a decode step: how long recording one step's commands takes (ms, and µs a dispatch), and
// how long the submit, on a Mistral-shaped model deep enough to count (32 layers) and narrow enough (hidden 64)
// that the device's work is small. Each step is recorded after the previous one was read back, so the device is
// idle while the host records: the figure is the host's alone. Decoding is host-bound where this nears the time of
// a step on the device (GenerationTiming.recordSeconds tells it for a real generation).
// Prints one line a run, then one JSON line. Usage: node --import tsx bench/decode_host.ts [--layers N] [--steps N]
import { parseArgs } from 'node:util';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { flush, sync } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { CausalLM } from '../models/causal_lm.ts';
import { parseConfig } from '../models/config.ts';
import { initParameters } from '../models/init.ts';

const { values } = parseArgs({ options: { layers: { type: 'string', default: '32' }, steps: { type: 'string', default: '200' } } });
const layers = Number(values.layers), steps = Number(values.steps);
if (!Number.isSafeInteger(layers) || layers < 1 || !Number.isSafeInteger(steps) || steps < 21) throw new Error(`--layers ${values.layers} --steps ${values.steps}: expected integers >= 1 and >= 21`);
const WARMUP = 20; // steps before timing: pipelines compiled, the pool and bind groups warm

await initGpu();
const config = parseConfig({
  architectures: ['MistralForCausalLM'], model_type: 'mistral', vocab_size: 256, hidden_size: 64, num_hidden_layers: layers,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, intermediate_size: 128, hidden_act: 'silu', max_position_embeddings: steps + 16,
  rms_norm_eps: 1e-5, rope_theta: 10000, sliding_window: null, tie_word_embeddings: false, torch_dtype: 'float32', bos_token_id: 1, eos_token_id: 2,
}, 'decode_host config');
const model = new CausalLM(config, initParameters(config, 0));
const cache = model.createCache(1, steps + 8);
let input = Tensor.fromArray([1, 5, 6, 7, 8], [1, 5], 'i32');
const record: number[] = [], submit: number[] = [];
let dispatches = 0;
for (let s = 0; s < steps; s++) {
  const before = ledger.all().reduce((n, e) => n + e.dispatches, 0);
  const t0 = performance.now();
  const logits = tidy(() => model.stepLast(input, cache));
  const t1 = performance.now();
  flush();
  const t2 = performance.now();
  await sync();
  logits.dispose();
  input.dispose();
  input = Tensor.fromArray([3], [1, 1], 'i32');
  if (s >= WARMUP) { record.push(t1 - t0); submit.push(t2 - t1); dispatches = ledger.all().reduce((n, e) => n + e.dispatches, 0) - before; }
}
input.dispose();
for (const layer of cache) layer.dispose();
model.dispose();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const { adapterInfo } = gpu();
const device = `${adapterInfo.description || adapterInfo.architecture} (${adapterInfo.vendor})`;
const recordMs = median(record), submitMs = median(submit);
console.log(`${device}: ${layers} layers, ${dispatches} dispatches a decode step: recorded in ${recordMs.toFixed(2)} ms (${(recordMs * 1e3 / dispatches).toFixed(1)} µs a dispatch), submitted in ${submitMs.toFixed(2)} ms (medians of ${record.length} steps)`);
console.log(JSON.stringify({ bench: 'decode_host', device, layers, dispatches, record_ms: +recordMs.toFixed(3), us_per_dispatch: +(recordMs * 1e3 / dispatches).toFixed(2), submit_ms: +submitMs.toFixed(3) }));
releaseGpu();
