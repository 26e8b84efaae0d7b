// The LM head and its loss, forward and backward, in two forms, in the same run: the fused head
// (engine/ops/lm_head.ts: vocabulary chunks, no [B·T, V] logits, the logits recomputed in the backward) and the
// logits path (linear, then tokenLogprobs, which keeps the logits for the backward). Loss: the mean next-token
// cross-entropy. Prints ms per step (median), the pool's peak above what was live before the step, and the ledger's
// FLOPs; the logits path is skipped, said so, where a tensor it needs exceeds one binding of the device. The fused
// head runs in its default chunks (kernels/token_logprobs.ts headChunkRows) and in 8.
//   default: B8 T64 C256 V8192 (both forms fit everywhere)
//   --pythia: Pythia-160m's head at B8 T512: C768 V50304 (logits 824 MB; the weight 154 MB, more than lavapipe's
//     128 MiB binding, bound in windows by the fused head)
// Usage: npx tsx bench/lm_head.ts [--pythia] [--steps N]; ends with one JSON line per form.
import { backward, zeroGrad } from '../engine/autodiff.ts';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { headChunks, headTokenLogprobs } from '../engine/ops/lm_head.ts';
import { linear } from '../engine/ops/matmul.ts';
import { tokenLogprobs } from '../engine/ops/token_logprobs.ts';
import { pool } from '../engine/pool.ts';
import { flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { nextTokenLoss } from '../train/objectives/sft.ts';

const args = process.argv.slice(2);
const pythia = args.includes('--pythia');
const steps = Number(args[args.indexOf('--steps') + 1] ?? 0) || (pythia ? 2 : 5);
const [B, T, C, V] = pythia ? [8, 512, 768, 50304] : [8, 64, 256, 8192];

function values(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = ((s / 2 ** 32) * 2 - 1) * scale; }
  return out;
}

await initGpu();
const { limits, adapterInfo } = gpu();
const hidden = Tensor.fromArray(values(B * T * C, 1, 1), [B, T, C]).keep();
hidden.requiresGrad = true;
const weight = Tensor.fromArray(values(V * C, 2, 1 / Math.sqrt(C)), [V, C]).keep();
weight.requiresGrad = true;
const ids = Tensor.fromArray(Array.from({ length: B * T }, (_, i) => (i * 7919) % V), [B, T], 'i32').keep();
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
console.log(`device: ${adapterInfo.description || adapterInfo.architecture}; LM head B${B} T${T} C${C} V${V}; maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}`);

// The fused head in its default chunks, and in 8 (what a smaller chunk budget gives).
const eighth = Math.ceil(V / 8 / 256) * 256;
const forms: Record<string, { logp: () => Tensor; chunkRows?: number }> = {
  fused: { logp: () => headTokenLogprobs(hidden, weight, ids) },
  'fused, 8 chunks': { logp: () => headTokenLogprobs(hidden, weight, ids, { chunkRows: eighth }), chunkRows: eighth },
  logits: { logp: () => tokenLogprobs(linear(hidden, weight), ids) },
};
const results: Record<string, unknown>[] = [];
for (const [form, { logp, chunkRows }] of Object.entries(forms)) {
  const logitsBytes = 4 * B * T * V;
  if (form === 'logits' && Math.max(logitsBytes, 4 * V * C) > limits.maxStorageBufferBindingSize) {
    const note = `skipped: the logits (${logitsBytes} bytes) or the weight (${4 * V * C} bytes) exceed one binding (${limits.maxStorageBufferBindingSize})`;
    console.log(`${form}: ${note}; it would hold ${mib(2 * logitsBytes)} of logits and their gradient at once`);
    results.push({ form, note, logits_bytes: logitsBytes });
    continue;
  }
  const step = async () => {
    const t0 = performance.now();
    tidy(() => backward(nextTokenLoss(logp())));
    zeroGrad([hidden, weight]);
    flush();
    await hidden.toArray(); // waits for the step
    return performance.now() - t0;
  };
  await step(); // compiles the pipelines
  const live = pool.liveBytes;
  pool.resetPeak();
  ledger.reset();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) times.push(await step());
  const median = [...times].sort((a, b) => a - b)[times.length >> 1];
  const flops = ledger.byOp().reduce((s, r) => s + r.flops, 0) / steps;
  const above = pool.peakBytes - live;
  const chunks = form === 'logits' ? 1 : headChunks(B * T, weight, { chunkRows }).length;
  console.log(`${form}: ${median.toFixed(1)} ms/step (median of ${steps}); peak ${mib(above)} above the ${mib(live)} live; ${(flops / 1e9).toFixed(2)} GFLOP a step; ${chunks} chunk(s)`);
  results.push({ form, ms_per_step: +median.toFixed(2), step_peak_bytes: above, gflop_per_step: +(flops / 1e9).toFixed(3), chunks });
}
for (const r of results) console.log(JSON.stringify({ bench: `lm_head B${B} T${T} C${C} V${V}`, ...r }));
releaseGpu();
