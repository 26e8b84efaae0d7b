// Mistral decoding with grouped products (models/mistral.ts: q, k, v in one small-M product, gate, up and SwiGLU in
// another) on the cache's fused path, against the reference path (KVCache fusedRotary false: separate products):
// the same logits and cache bit for bit, 8 dispatches a layer instead of 12, and an adapted module kept separate.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { ledger } from '../../engine/ledger.ts';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import { loadCausalLM, type CausalLM } from '../../models/causal_lm.ts';
import { attachLora, loraConfig } from '../../models/peft.ts';
import { download, initGpu, randInt } from '../support/util.ts';

const MISTRAL = fileURLToPath(new URL('../fixtures/hf/mistral/', import.meta.url));

/** Steps of widths `widths` over rows of `lengths` prompt tokens (left-padded) on a grouped and a reference cache: per step, logits and dispatches by op. */
async function decode(model: CausalLM, lengths: number[], widths: number[]) {
  const B = lengths.length, longest = Math.max(...lengths), total = widths.reduce((a, b) => a + b, 0);
  const ids = randInt(B * total, model.config.vocabSize, 7);
  const caches = [true, false].map((fused) => model.createCache(B, total, lengths.map((n) => longest - n), fused));
  const steps: { logits: Float64Array[]; dispatches: Record<string, number>[]; flops: Record<string, number>[] }[] = [];
  let start = 0;
  for (const width of widths) {
    const input = Array.from({ length: B * width }, (_, i) => ids[Math.floor(i / width) * total + start + (i % width)]);
    const step: (typeof steps)[number] = { logits: [], dispatches: [], flops: [] };
    for (const cache of caches) {
      ledger.reset();
      step.logits.push(await tidyAsync(() => download(model.step(Tensor.fromArray(input, [B, width], 'i32'), cache))));
      step.dispatches.push(Object.fromEntries(ledger.byOp().map((r) => [r.key, r.dispatches])));
      step.flops.push(Object.fromEntries(ledger.byOp().map((r) => [r.key, r.flops])));
    }
    steps.push(step);
    start += width;
  }
  const cached = await Promise.all(caches.map((c) => Promise.all(c.flatMap((l) => [download(l.k), download(l.v)]))));
  for (const c of caches) for (const l of c) l.dispose();
  return { steps, cached };
}

const sum = (d: Record<string, number>) => Object.values(d).reduce((a, b) => a + b, 0);

for (const weightsDtype of ['f32', 'bf16'] as const) {
  test(`mistral fixture ${weightsDtype}: grouped decoding gives the separate products' logits and cache bit for bit, in 8 dispatches a layer`, async () => {
    await initGpu();
    const model = loadCausalLM(MISTRAL, { weightsDtype });
    const L = model.config.layers;
    // One row, then three left-padded rows; decode steps of one token and of a few (3 x 3, 3 x 2 rows).
    for (const [lengths, widths] of [[[5], [5, 1, 1, 1, 3, 1]], [[5, 2, 9], [9, 1, 1, 2, 1]]] as const) {
      const { steps, cached } = await decode(model, [...lengths], [...widths]);
      for (const [i, { logits, dispatches: [grouped, reference], flops }] of steps.entries()) {
        const what = `${weightsDtype} rows [${lengths}] step ${i} (width ${widths[i]})`;
        assert.equal(logits[0], logits[1], `${what}: logits`);
        // The ledger charges the grouped products as their parts: the same FLOPs by op (the reference's rotary and
        // cache copies charge what qkvRotary does), so the FLOP audit is unchanged.
        for (const op of ['matmulSmallM', 'swiglu', 'rmsNormForward', 'attentionDecode', 'add']) assert.is(flops[0][op], flops[1][op], `${what}: ${op} FLOPs`);
        assert.is(sum(flops[0]), sum(flops[1]), `${what}: FLOPs`);
        if (i === 0) continue; // the prompt pass: more rows than the small-M kernel takes, nothing grouped
        // Per layer the reference runs q, k, v, o, gate, up, down and swiglu; the grouped one q|k|v, o, gate·up, down.
        assert.is(reference.matmulSmallM - grouped.matmulSmallM, 3 * L, `${what}: matmulSmallM`);
        assert.is(grouped.swiglu ?? 0, 0, `${what}: swiglu fused`);
        assert.is(reference.swiglu, L, `${what}: swiglu`);
        assert.is(grouped.qkvRotary, L, `${what}: qkvRotary`);
        // The reference also runs rotary unfused (permutes, rotary, cache copies); count the grouped path's own.
        // A layer: 2 norms, q|k|v, qkvRotary, attentionDecode, o_proj, gate·up, down_proj = 8; then the final norm and
        // the head (and the embedding before); T > 1 also permutes the attention's output.
        const ran = Object.fromEntries(Object.entries(grouped).filter(([, n]) => n > 0));
        assert.equal(ran, { matmulSmallM: 4 * L + 1, qkvRotary: L, attentionDecode: L, rmsNormForward: 2 * L + 1, embedding: 1, ...(widths[i] > 1 ? { permute: L } : {}) }, what);
        if (widths[i] === 1) assert.is(sum(grouped) - 3, 8 * L, `${what}: 8 dispatches a layer`);
      }
      cached[0].forEach((t, j) => assert.equal(t, cached[1][j], `${weightsDtype} rows [${lengths}]: cache tensor ${j}`));
    }
    model.dispose();
  });
}

test('mistral fixture: a module with a LoRA adapter keeps its separate product (q_proj: q, k, v ungrouped; the MLP still grouped)', async () => {
  await initGpu();
  const model = loadCausalLM(MISTRAL);
  attachLora(model, loraConfig(model.config, { r: 4, targetModules: ['q_proj'] }), undefined, 3);
  const L = model.config.layers;
  const { steps } = await decode(model, [4], [4, 1, 1]);
  for (const { logits, dispatches: [grouped, reference] } of steps.slice(1)) {
    assert.equal(logits[0], logits[1], 'logits');
    assert.is(reference.matmulSmallM - grouped.matmulSmallM, L, 'only gate and up grouped');
    assert.is(grouped.loraDown, L);
  }
  model.dispose();
});

test.run();
