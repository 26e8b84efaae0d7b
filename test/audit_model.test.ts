import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { modelParams, type ModelConfig } from '../models/config.ts';
import { loraParamSpecs } from '../models/lora.ts';
import type { LedgerRow } from '../engine/ledger.ts';
import {
  ADAMW_FLOPS_PER_ELEMENT, ATTENTION_BACKWARD_FACTOR, auditJson, auditRows, auditTable, backwardBreakdown, forwardBreakdown,
  generationBreakdown, headLinear, layerLinears, loraElements, mergeFlops, phaseFlops, runAnalyticFlops, visibleKeys,
} from '../train/audit_model.ts';

const base = {
  head: 'lm', rotaryDims: 4, ropeTheta: 10000, eps: 1e-5, maxPositions: 64, tieWordEmbeddings: false,
  bosTokenId: 0, eosTokenId: 0, padTokenId: null,
} as const;

// C 8, 2 layers, 2 heads of 4, I 32, V 16, biases everywhere.
const neox: ModelConfig = {
  ...base, modelType: 'gpt_neox', vocabSize: 16, hidden: 8, layers: 2, heads: 2, kvHeads: 2, headDim: 4, intermediate: 32,
  slidingWindow: null, parallelResidual: true, hiddenAct: 'gelu', attentionBias: true,
};
// C 16, 1 layer, 4 query heads of 4 over 2 K/V heads, I 24, V 32, window 3, no biases.
const mistral: ModelConfig = {
  ...base, modelType: 'mistral', vocabSize: 32, hidden: 16, layers: 1, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24,
  slidingWindow: 3, parallelResidual: false, hiddenAct: 'silu', attentionBias: false,
};

test('the products match the parameter tables (every weight matrix, no embedding)', () => {
  for (const c of [neox, mistral]) {
    const table = modelParams(c).filter((s) => s.role === 'weight' || s.role === 'head').reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
    const h = headLinear(c);
    const mine = c.layers * layerLinears(c).reduce((n, l) => n + l.in * l.out, 0) + h.in * h.out;
    assert.is(mine, table, c.modelType);
  }
  // NeoX per layer: qkv 8·24 = 192, dense 8·8 = 64, h_to_4h 8·32 = 256, 4h_to_h 32·8 = 256: 768.
  assert.is(layerLinears(neox).reduce((n, l) => n + l.in * l.out, 0), 768);
  // Mistral: q 16·16 = 256, k and v 16·8 = 128 each, o 256, gate, up, down 16·24 = 384 each: 1920.
  assert.is(layerLinears(mistral).reduce((n, l) => n + l.in * l.out, 0), 1920);
});

test('visible keys: causal and sliding-window sums', () => {
  assert.is(visibleKeys(0, 5, null), 15); // 1+2+3+4+5
  assert.is(visibleKeys(0, 6, 3), 15); // 1+2+3+3+3+3
  assert.is(visibleKeys(0, 6, null), 21);
  assert.is(visibleKeys(4, 6, 3), 6); // 3+3
  assert.is(visibleKeys(3, 5, null), 9); // 4+5
  assert.is(visibleKeys(0, 3, 3), 6); // window not reached
  assert.is(visibleKeys(0, 10, 1), 10);
});

test('GPT-NeoX forward and backward by hand: prompt 3 + response 2', () => {
  // Per token: matmul 2·(2 layers · 768) = 3072; bias adds 2·(24 + 8 + 32 + 8) = 144; head 2·8·16 = 256.
  // Attention: 2 layers · 4·(2·4) = 64 per visible key; T = 5: 15 keys -> 960.
  // head 'all': 5·3072 + 5·144 + 5·256 + 960 = 15360 + 720 + 1280 + 960 = 18320.
  const seq = [{ count: 1, promptLength: 3, responseLength: 2 }];
  assert.equal(forwardBreakdown(neox, { sequences: seq, head: 'all' }), { matmul: 15360, bias: 720, head: 1280, attention: 960, lora: 0 });
  assert.is(phaseFlops(neox, 'policy-forward', { sequences: seq, head: 'all' }), 18320);
  // head 'response': 2 positions -> 15360 + 720 + 512 + 960 = 17552; two such sequences twice that.
  assert.is(phaseFlops(neox, 'reference', { sequences: seq, head: 'response' }), 17552);
  assert.is(phaseFlops(neox, 'reference', { sequences: [{ ...seq[0], count: 2 }], head: 'response' }), 2 * 17552);
  // Backward: 2·15360 + 720 (bias gradients) + 2·1280 + 3.5·960 = 30720 + 720 + 2560 + 3360 = 37360.
  assert.is(ATTENTION_BACKWARD_FACTOR, 3.5);
  assert.equal(backwardBreakdown(neox, { sequences: seq, head: 'all' }), { matmul: 30720, bias: 720, head: 2560, attention: 3360, lora: 0 });
  assert.is(phaseFlops(neox, 'policy-backward', { sequences: seq, head: 'all' }), 37360);
  assert.is(phaseFlops(neox, 'policy-backward', { sequences: seq, head: 'all', attentionBackwardFactor: 2.5 }), 37360 - 960);
});

test('Mistral forward by hand: windowed against causal attention, head on the last position', () => {
  // Per token: matmul 2·1920 = 3840, no biases; head 2·16·32 = 1024 once; attention 1 layer · 4·(4·4) = 64 per key.
  // T = 6, window 3: 15 keys -> 960: 6·3840 + 1024 + 960 = 25024. Causal: 21 keys -> 1344: 25408.
  const seq = [{ count: 1, promptLength: 4, responseLength: 2 }];
  assert.is(phaseFlops(mistral, 'policy-forward', { sequences: seq, head: 'last' }), 25024);
  assert.is(phaseFlops({ ...mistral, slidingWindow: null }, 'policy-forward', { sequences: seq, head: 'last' }), 25408);
  // A reward model (score head 1·16): 6·3840 + 2·16 + 960 = 24032; its backward 2·23040 + 2·32 + 3.5·960 = 49504.
  const reward = { ...mistral, head: 'score' as const };
  assert.is(phaseFlops(mistral, 'reward-forward', { sequences: seq, head: 'last', model: reward }), 24032);
  assert.is(phaseFlops(mistral, 'reward-backward', { sequences: seq, head: 'last', model: reward }), 49504);
});

test('LoRA by hand: Mistral r 2 on q_proj and v_proj', () => {
  const lora = { r: 2, targets: ['q_proj', 'v_proj'] };
  const seq = [{ count: 1, promptLength: 4, responseLength: 2 }];
  // Forward per token: q 2·2·(16 + 16) + 2·16 = 160; v 2·2·(16 + 8) + 2·8 = 112; 272 · 6 tokens = 1632.
  const f = forwardBreakdown(mistral, { sequences: seq, head: 'last', lora });
  assert.is(f.lora, 1632);
  assert.is(phaseFlops(mistral, 'policy-forward', { sequences: seq, head: 'last', lora }), 25024 + 1632);
  // Backward, frozen base: dX only, 1x: 23040 + 1024 (head) + 3.5·960 = 3360 attention;
  // adapters per token: q 4·2·32 + 16 + 16 = 288, v 4·2·24 + 8 + 16 = 216; 504 · 6 = 3024. Total 30448.
  assert.equal(backwardBreakdown(mistral, { sequences: seq, head: 'last', lora }), { matmul: 23040, bias: 0, head: 1024, attention: 3360, lora: 3024 });
  // Trainable: 2·(16 + 16) + 2·(16 + 8) = 112, as the LoRA parameter table says.
  assert.is(loraElements(mistral, lora), 112);
  assert.is(loraParamSpecs(mistral, lora).reduce((n, s) => n + s.shape[0] * s.shape[1], 0), 112);
  // Merge: (2·2 + 2)·16·16 + (2·2 + 2)·16·8 = 1536 + 768 = 2304.
  assert.is(mergeFlops(mistral, { lora }), 2304);
  // 'all-linear' leaves the head out; NeoX biases are frozen, so no bias gradient.
  const all = { r: 1, targets: 'all-linear' as const };
  assert.is(loraElements(neox, all), 2 * ((8 + 24) + (8 + 8) + (8 + 32) + (32 + 8)));
  assert.is(backwardBreakdown(neox, { sequences: seq, head: 'all', lora: all }).bias, 0);
  // The head as a target: its adapter trains, its weight gets dX only. Per head token: 4·2·(16 + 32) + 32 + 16 = 432.
  const headLora = { r: 2, targets: ['lm_head'] };
  assert.equal(backwardBreakdown(mistral, { sequences: seq, head: 'last', lora: headLora }), { matmul: 23040, bias: 0, head: 1024, attention: 3360, lora: 432 });
});

test('generation by hand: prompt pass with the head on the last position, then a step per further token', () => {
  // NeoX, prompt 3, 3 new tokens: prompt pass 3·3072 + 3·144 + 256 + 64·(1+2+3) = 9216 + 432 + 256 + 384 = 10288;
  // 2 decode steps at positions 3 and 4: 2·3072 + 2·144 + 2·256 + 64·(4+5) = 6144 + 288 + 512 + 576 = 7520. 17808.
  const g = (newTokens: number, count = 1) => ({ sequences: [{ count, promptLength: 3, newTokens }] });
  assert.is(phaseFlops(neox, 'generation', g(1)), 10288);
  assert.is(phaseFlops(neox, 'generation', g(3)), 17808);
  assert.is(phaseFlops(neox, 'generation', g(3, 4)), 4 * 17808);
  assert.is(phaseFlops(neox, 'generation', g(0)), 0);
  // Mistral, prompt 4, 3 new tokens, window 3: keys 1+2+3+3 = 9 in the prompt pass, 3+3 = 6 in the steps.
  // 4·3840 + 1024 + 64·9 = 16960; 2·3840 + 2·1024 + 64·6 = 10112. 27072.
  const m = generationBreakdown(mistral, { sequences: [{ count: 1, promptLength: 4, newTokens: 3 }] });
  assert.is(m.attention, 64 * 15);
  assert.is(phaseFlops(mistral, 'generation', { sequences: [{ count: 1, promptLength: 4, newTokens: 3 }] }), 27072);
});

test('a run: every phase, zero where absent; the optimizer at 14 flops per element or a given count', () => {
  const seq = [{ count: 1, promptLength: 3, responseLength: 2 }];
  const run = runAnalyticFlops(neox, {
    generation: { sequences: [{ count: 1, promptLength: 3, newTokens: 3 }] },
    'policy-forward': { sequences: seq, head: 'all' },
    'policy-backward': { sequences: seq, head: 'all' },
    optimizer: { trainableElements: 1000 },
  });
  assert.equal(run, { generation: 17808, reference: 0, 'policy-forward': 18320, 'policy-backward': 37360, 'reward-forward': 0, 'reward-backward': 0, optimizer: 14000, merge: 0 });
  assert.is(ADAMW_FLOPS_PER_ELEMENT, 14);
  assert.is(phaseFlops(neox, 'optimizer', { trainableElements: 1000, flopsPerElement: 6 }), 6000); // e.g. RMSprop
  assert.throws(() => phaseFlops(neox, 'reference', { sequences: [{ count: 1, promptLength: -1, responseLength: 2 }], head: 'all' }), /non-negative/);
});

test('the report: table and JSON from ledger rows and analytic counts', () => {
  const row = (key: string, flops: number, ns: number, timed: number): LedgerRow => ({ key, flops, bytesRead: 3e6, bytesWritten: 1e6, dispatches: 5, ns, timed });
  const rows = auditRows([row('policy-backward', 4e9, 0, 0), row('policy-forward', 2.2e9, 2e6, 5), row('other', 1e6, 0, 0)], { 'policy-forward': 2e9, 'policy-backward': 4e9 });
  assert.equal(rows.map((r) => r.phase), ['policy-forward', 'policy-backward', 'other']);
  const json = auditJson(rows);
  assert.equal(json['policy-forward'], { ledger_flops: 2.2e9, analytic_flops: 2e9, ratio: 1.1, bytes: 4e6, gpu_ms: 2 });
  assert.equal(json['policy-backward'], { ledger_flops: 4e9, analytic_flops: 4e9, ratio: 1, bytes: 4e6, gpu_ms: null });
  assert.is(json.other.ratio, null);
  const table = auditTable(rows, { peakTflops: 1 });
  console.log(table.split('\n').map((l) => `  ${l}`).join('\n'));
  const lines = table.split('\n');
  assert.is(lines.length, 5); // header, three phases, total
  // 2 GFLOP in 2 ms = 1 TFLOP/s: MFU 100% against a 1 TFLOP/s peak.
  assert.ok(/policy-forward .* 1\.100 +2\.000 +100\.00%$/.test(lines[1]), lines[1]);
  assert.ok(/policy-backward .* 1\.000 +— +—$/.test(lines[2]), lines[2]);
  // The total's MFU over the timed phases only.
  assert.ok(/^total .* 1\.034 +2\.000 +100\.00%$/.test(lines[4]), lines[4]);
});

test.run();
