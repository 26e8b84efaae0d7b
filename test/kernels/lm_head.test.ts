// The fused LM head (engine/ops/lm_head.ts) against a float64 reference: logits = hidden · weightᵀ, then the token
// log-probs and their gradients in hidden and weight; in one chunk, in uneven chunks, with a frozen 16-bit weight;
// and CausalLM.tokenLogprobs against tokenLogprobs of the model's logits (values and every parameter's gradient).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backward } from '../../engine/autodiff.ts';
import { headChunks, headTokenLogprobs } from '../../engine/ops/lm_head.ts';
import { tokenLogprobs } from '../../engine/ops/token_logprobs.ts';
import { Tensor, tidy, tidyAsync } from '../../engine/tensor.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { headChunkRows, HEAD_CHUNK_BYTES } from '../../kernels/token_logprobs.ts';
import { initGpu as init } from '../../engine/gpu.ts';
import { deviceLimits } from '../../engine/launch.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCausalLM } from '../../models/causal_lm.ts';
import { tinyConfigJson, writeByteModel } from '../support/byte_model.ts';
import { assertClose, download, initGpu, randInt, randn, upload } from '../support/util.ts';

/** float64: logp[b, t] of logits h·Wᵀ, and the gradients of Σ g·logp in h [N, C] and W [V, C]. */
function reference(h: Float64Array, w: ArrayLike<number>, ids: Int32Array, [B, T, C, V]: number[], g: Float64Array) {
  const N = B * T, logits = new Float64Array(N * V);
  for (let i = 0; i < N; i++) for (let v = 0; v < V; v++) { let s = 0; for (let c = 0; c < C; c++) s += h[i * C + c] * w[v * C + c]; logits[i * V + v] = s; }
  const logp = new Float64Array(N), dl = new Float64Array(N * V);
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) {
    const r = b * T + t - 1, row = logits.subarray(r * V, (r + 1) * V), id = ids[b * T + t];
    const max = Math.max(...row), lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    logp[b * T + t] = row[id] - lse;
    row.forEach((x, j) => { dl[r * V + j] = g[b * T + t] * ((j === id ? 1 : 0) - Math.exp(x - lse)); });
  }
  const dh = new Float64Array(N * C), dw = new Float64Array(V * C);
  for (let i = 0; i < N; i++) for (let v = 0; v < V; v++) {
    const d = dl[i * V + v];
    if (d !== 0) for (let c = 0; c < C; c++) { dh[i * C + c] += d * w[v * C + c]; dw[v * C + c] += d * h[i * C + c]; }
  }
  return { logp, dh, dw };
}

async function checkHead(B: number, T: number, C: number, V: number, chunkRows: number | undefined, half: boolean, seed: number): Promise<void> {
  const what = `B${B} T${T} C${C} V${V} chunks of ${chunkRows ?? 'the default'}${half ? ', f16 weight' : ''}`;
  const h = randn(B * T * C, seed, 1), ids = randInt(B * T, V, seed + 1), g = randn(B * T, seed + 2);
  const w32 = Float32Array.from(randn(V * C, seed + 3, 0.3));
  const w = half ? f16ToF32(f32ToF16(w32)) : w32; // the values the GPU sees
  const ref = reference(h, w, ids, [B, T, C, V], g);
  await tidyAsync(async () => {
    const hidden = upload(h, [B, T, C], true);
    const weight = half ? Tensor.fromBits(f32ToF16(w32), [V, C], 'f16') : upload(w, [V, C], true);
    const logp = headTokenLogprobs(hidden, weight, Tensor.fromArray(ids, [B, T], 'i32'), { chunkRows });
    tidy(() => backward(logp, upload(g, [B, T])));
    assertClose(await download(logp), ref.logp, 1e-5, `${what}: logp`);
    assertClose(await download(hidden.grad!), ref.dh, 1e-4, `${what}: dhidden`);
    if (half) assert.is(weight.grad, null, `${what}: a 16-bit weight is frozen`);
    else assertClose(await download(weight.grad!), ref.dw, 1e-4, `${what}: dweight`);
    hidden.grad!.dispose();
    weight.grad?.dispose();
  });
}

test('headTokenLogprobs: values and gradients against float64, in one chunk and in uneven chunks', async () => {
  await initGpu();
  await checkHead(2, 7, 64, 300, undefined, false, 1);
  await checkHead(2, 7, 64, 300, 64, false, 2); // 5 chunks, the last of 44 rows
  await checkHead(1, 5, 64, 100, 32, true, 3);
  await checkHead(3, 1, 64, 40, 16, false, 4); // T = 1 predicts nothing
});

test('the chunk plan: one chunk while the logits fit, aligned chunks past it', async () => {
  await init();
  const limits = deviceLimits();
  assert.equal(headChunkRows(limits, 512, 1000, 64), { rows: 1000, chunks: 1 });
  // Pythia-160m at B8 T512: 4096 positions, 32 MiB of logits a chunk: 2048 rows, 25 chunks.
  const pythia = headChunkRows(limits, 4096, 50304, 768);
  assert.equal(pythia, { rows: HEAD_CHUNK_BYTES / (4 * 4096), chunks: 25 });
  const odd = headChunkRows({ ...limits, minStorageBufferOffsetAlignment: 256 }, 4096, 50304, 100, HEAD_CHUNK_BYTES);
  assert.is((odd.rows * 2 * 100) % 256, 0, 'a chunk of 16-bit rows starts on the alignment');
  assert.throws(() => headChunks(10, Tensor.empty([40, 16]), { chunkRows: 0 }), /chunkRows must be a positive integer/);
});

test('CausalLM.tokenLogprobs equals tokenLogprobs of its logits, values and every gradient (untied and tied heads)', async () => {
  await initGpu();
  for (const tied of [false, true]) {
    const model = loadCausalLM(writeByteModel(fs.mkdtempSync(path.join(os.tmpdir(), 'juice-head-')), tinyConfigJson({ tie_word_embeddings: tied })));
    const ids = Tensor.fromArray(randInt(2 * 12, model.config.vocabSize, 7), [2, 12], 'i32');
    const g = upload(randn(24, 8), [2, 12]);
    const entries = model.params.entries();
    const run = async (fused: boolean) => tidyAsync(async () => {
      const logp = fused ? model.tokenLogprobs(ids) : tokenLogprobs(model.forward(ids), ids);
      tidy(() => backward(logp, g));
      const grads = await Promise.all(entries.map(async (e) => download(e.param.grad!)));
      for (const e of entries) { e.param.grad!.dispose(); e.param.grad = null; }
      return { logp: await download(logp), grads };
    });
    const fused = await run(true), logits = await run(false);
    assertClose(fused.logp, logits.logp, 1e-6, `tied ${tied}: logp`);
    fused.grads.forEach((gr, i) => assertClose(gr, logits.grads[i], 1e-5, `tied ${tied}: gradient of ${entries[i].name}`));
    model.params.dispose();
  }
});

test.run();
