// The analytic model (train/audit_model.ts) by hand, no GPU: every term on tiny GPT-NeoX and Mistral configs,
// each per-element constant against the cost its kernel's spec states, the tile count against the kernels' own.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelParams, type ModelConfig } from '../../models/config.ts';
import { loraParamSpecs } from '../../models/lora.ts';
import type { LedgerRow } from '../../engine/ledger.ts';
import { ROW_REDUCTION_SHAPES, type DeviceLimits } from '../../kernels/spec.ts';
import { accumulateCall } from '../../kernels/accumulate.ts';
import { activationBackwardCall, activationCall, gatedActivationBackwardCall, gatedActivationCall } from '../../kernels/activation.ts';
import { adamwCall } from '../../kernels/adamw.ts';
import { attentionBackwardDkDvCall } from '../../kernels/attention_backward_dkdv.ts';
import { attentionBackwardDqCall } from '../../kernels/attention_backward_dq.ts';
import { attentionDecodeCall, attentionDecodeReduceCall } from '../../kernels/attention_decode.ts';
import { attentionDeltaCall } from '../../kernels/attention_delta.ts';
import { attentionForwardCall, tileWork } from '../../kernels/attention_forward.ts';
import { binaryCall } from '../../kernels/binary.ts';
import { dropoutCall } from '../../kernels/dropout.ts';
import { embeddingBackwardCall } from '../../kernels/embedding.ts';
import { layerNormBackwardCall } from '../../kernels/layernorm_backward.ts';
import { layerNormForwardCall } from '../../kernels/layernorm_forward.ts';
import { rmsNormBackwardCall } from '../../kernels/rmsnorm_backward.ts';
import { rmsNormForwardCall } from '../../kernels/rmsnorm_forward.ts';
import { rmspropCall } from '../../kernels/rmsprop.ts';
import { qkvRotaryCall } from '../../kernels/qkv_rotary.ts';
import { rotaryCall } from '../../kernels/rotary.ts';
import { sampleTokensPasses } from '../../kernels/sample_tokens.ts';
import { squaredSumCall } from '../../kernels/squared_sum.ts';
import { tokenLogprobsBackwardCall, tokenLogprobsCall } from '../../kernels/token_logprobs.ts';
import { Workloads, WORKLOADS_FILE, type WorkloadsOptions } from '../../train/audit.ts';
import * as M from '../../train/audit_model.ts';
import {
  auditJson, auditRows, auditTable, peakLabel, backwardBreakdown, forwardBreakdown, recomputeBreakdown, generationBreakdown, headLinear, layerLinears, loraElements,
  mergeFlops, phaseFlops, runAnalyticFlops, samplerFlopsPerLogit, tiledEntries, totalOf, usefulOf, visibleKeys, zeroBreakdown,
  type AttentionPlan, type FlopBreakdown,
} from '../../train/audit_model.ts';

const base = {
  head: 'lm', rotaryDims: 4, ropeTheta: 10000, eps: 1e-5, maxPositions: 64, tieWordEmbeddings: false,
  bosTokenId: 0, eosTokenId: 0, padTokenId: null,
} as const;

// C 8, 2 layers, 2 heads of 4 (all 4 dims rotated), I 32, V 16, biases everywhere, parallel residual.
const neox: ModelConfig = {
  ...base, modelType: 'gpt_neox', vocabSize: 16, hidden: 8, layers: 2, heads: 2, kvHeads: 2, headDim: 4, intermediate: 32,
  slidingWindow: null, parallelResidual: true, hiddenAct: 'gelu', attentionBias: true,
};
// C 16, 1 layer, 4 query heads of 4 over 2 K/V heads, I 24, V 32, window 3, no biases.
const mistral: ModelConfig = {
  ...base, modelType: 'mistral', vocabSize: 32, hidden: 16, layers: 1, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24,
  slidingWindow: 3, parallelResidual: false, hiddenAct: 'silu', attentionBias: false,
};

const LIMITS: DeviceLimits = {
  maxStorageBufferBindingSize: 134217728, maxBufferSize: 268435456, maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256, maxComputeWorkgroupSizeZ: 64, maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 8, minUniformBufferOffsetAlignment: 256, minStorageBufferOffsetAlignment: 256,
};

const parts = (p: Partial<FlopBreakdown>): FlopBreakdown => ({ ...zeroBreakdown(), ...p });

test('each per-element constant is what its kernel charges', () => {
  const n = 1000, per = (flops: number) => flops / n;
  assert.is(per(layerNormForwardCall(LIMITS, ROW_REDUCTION_SHAPES.gpu, 10, 100, 1e-5).cost.flops), M.LAYER_NORM_FORWARD_FLOPS);
  assert.is(per(layerNormForwardCall(LIMITS, ROW_REDUCTION_SHAPES.gpu, 10, 100, 1e-5, true).cost.flops), M.LAYER_NORM_PAIR_FORWARD_FLOPS);
  assert.is(per(layerNormBackwardCall(LIMITS, ROW_REDUCTION_SHAPES.gpu, 10, 100).cost.flops), M.LAYER_NORM_BACKWARD_FLOPS);
  assert.is(per(rmsNormForwardCall(LIMITS, ROW_REDUCTION_SHAPES.gpu, 10, 100, 1e-5).cost.flops), M.RMS_NORM_FORWARD_FLOPS);
  assert.is(per(rmsNormBackwardCall(LIMITS, ROW_REDUCTION_SHAPES.gpu, 10, 100).cost.flops), M.RMS_NORM_BACKWARD_FLOPS);
  assert.is(per(activationCall(LIMITS, 'gelu', n).cost.flops), M.GELU_FORWARD_FLOPS);
  assert.is(per(activationBackwardCall(LIMITS, 'gelu', n).cost.flops), M.GELU_BACKWARD_FLOPS);
  assert.is(per(gatedActivationCall(LIMITS, 'silu', n, 'swiglu').cost.flops), M.SWIGLU_FORWARD_FLOPS);
  assert.is(per(gatedActivationBackwardCall(LIMITS, 'silu', n, 'swiglu').cost.flops), M.SWIGLU_BACKWARD_FLOPS);
  // 10 rows of head dim 8, 4 dims rotated: 20 pairs, forward and inverse alike.
  const layout = { batch: 1, heads: 2, seqLen: 5, headDim: 8, leftPadding: false };
  for (const inverse of [false, true]) assert.is(rotaryCall(LIMITS, layout, 4, 0, inverse).cost.flops, 20 * M.ROTARY_FLOPS_PER_PAIR);
  // The fused kernel: 5 tokens of 4 q heads and 2 kv heads, 2 pairs each of q and k (v is copied): 60 pairs, forward
  // and backward alike.
  const source = { qRowStride: 32, kvRowStride: 16, headStride: 8, kOffset: 0, vOffset: 0 };
  const fused = { batch: 1, seqLen: 5, heads: 4, kvHeads: 2, headDim: 8, kvLength: 9, leftPadding: true, oneProjection: false, source };
  for (const backward of [false, true]) assert.is(qkvRotaryCall(LIMITS, fused, 4, 3, backward).cost.flops, 60 * M.ROTARY_FLOPS_PER_PAIR);
  assert.is(per(binaryCall(LIMITS, 'add', [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n).cost.flops), M.ADD_FLOPS);
  assert.is(per(embeddingBackwardCall(LIMITS, 10, 50, 100).cost.flops), M.EMBEDDING_BACKWARD_FLOPS);
  // Token log-probs over [2, 5, 100]: 2·4 predicting positions forward, all 10 backward.
  assert.is(tokenLogprobsCall(LIMITS, 2, 5, 100).cost.flops, 8 * 100 * M.TOKEN_LOGPROBS_FORWARD_FLOPS);
  assert.is(tokenLogprobsBackwardCall(LIMITS, 2, 5, 100).cost.flops, 10 * 100 * M.TOKEN_LOGPROBS_BACKWARD_FLOPS);
  assert.is(per(dropoutCall(LIMITS, n, 0.1, { seed: 1, counter: 0, stream: 0 }).cost.flops), M.DROPOUT_FLOPS);
  assert.is(attentionDeltaCall(LIMITS, 10, 8).cost.flops, 10 * 8 * M.ATTENTION_DELTA_FLOPS);
  assert.is(attentionDecodeReduceCall(LIMITS, 10, 3, 8).cost.flops, 10 * 3 * 8 * M.DECODE_MERGE_FLOPS);
  // One chunk: no merge, the decode kernel divides each of the 2·4·1 rows' 8 dims by the row's sum.
  const decodeDims = { B: 2, H: 4, KVH: 2, T: 1, S: 16, D: 8 };
  const oneChunk = attentionDecodeCall(LIMITS, decodeDims, 10, { causal: true, window: 0, positionOffset: 9, hasKeyRange: false }, 1, 256);
  assert.is(oneChunk.cost.flops, 4 * 8 * 2 * 4 * 10 + 2 * 4 * 8 * M.DECODE_NORMALIZE_FLOPS);
  // Several tensors a dispatch: the cost per element of them all.
  const halves = [n / 2, n / 2];
  assert.is(per(squaredSumCall(LIMITS, halves.map((k, i) => ({ n: k, outOffset: i }))).cost.flops), M.GRAD_NORM_FLOPS_PER_ELEMENT);
  const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8, stepSize: 1e-3, bc2Sqrt: 1, gradScale: 1 };
  assert.is(per(adamwCall(LIMITS, halves.map((k) => ({ n: k, offset: 0, decayFactor: 1 })), adam).cost.flops), M.ADAMW_FLOPS_PER_ELEMENT);
  assert.is(per(rmspropCall(LIMITS, halves.map((k) => ({ n: k, offset: 0, weightDecay: 0 })), { alpha: 0.99, eps: 1e-8, lr: 1e-3, gradScale: 1 }).cost.flops), M.RMSPROP_FLOPS_PER_ELEMENT);
  assert.is(per(accumulateCall(LIMITS, n).cost.flops), M.ACCUMULATE_FLOPS);
  for (const s of [{ temperature: 0, topK: 0, topP: 1 }, { temperature: 1, topK: 0, topP: 1 }, { temperature: 1, topK: 5, topP: 1 }, { temperature: 1, topK: 0, topP: 0.9 }, { temperature: 0.7, topK: 5, topP: 0.9 }, { temperature: 1, topK: 40, topP: 1 }]) {
    const p = sampleTokensPasses(16, s);
    assert.is(samplerFlopsPerLogit(s, 16), M.SAMPLER_COUNTING_PASS_FLOPS * p.counting + M.SAMPLER_WEIGHTED_PASS_FLOPS * p.weighted, JSON.stringify(s));
  }
});

test('the products match the parameter tables (every weight matrix, no embedding)', () => {
  for (const c of [neox, mistral]) {
    const table = modelParams(c).filter((s) => s.role === 'weight' || s.role === 'head').reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
    const h = headLinear(c);
    assert.is(c.layers * layerLinears(c).reduce((n, l) => n + l.in * l.out, 0) + h.in * h.out, table, c.modelType);
  }
  assert.is(layerLinears(neox).reduce((n, l) => n + l.in * l.out, 0), 768); // 192 + 64 + 256 + 256
  assert.is(layerLinears(mistral).reduce((n, l) => n + l.in * l.out, 0), 1920); // 256 + 128 + 128 + 256 + 3 · 384
});

test('visible keys and the tiles the kernels execute', () => {
  assert.is(visibleKeys(0, 5, null), 15);
  assert.is(visibleKeys(0, 6, 3), 15); // 1+2+3+3+3+3
  assert.is(visibleKeys(4, 6, 3), 6);
  assert.is(visibleKeys(3, 5, null), 9);
  assert.is(visibleKeys(0, 10, 1), 10);
  // T 5 in tiles of 2 x 2: rows 0-1 keys [0, 2), rows 2-3 keys [0, 4), row 4 keys [0, 5): 4 + 8 + 5 = 17 (15 visible).
  assert.is(tiledEntries(5, { BR: 2, BC: 2 }, null), 17);
  // Window 3, T 6: rows 4-5 start at key 2 (its tile): 4 + 8 + 8 = 20.
  assert.is(tiledEntries(6, { BR: 2, BC: 2 }, 3), 20);
  // T 39 in 32 x 32 (the byte model's prompt on lavapipe): 32 · 32 + 7 · 39 = 1297 against 780 visible.
  assert.is(tiledEntries(39, { BR: 32, BC: 32 }, null), 1297);
  // The kernels' own count (kernels/attention_forward.ts tileWork) over shapes, tiles and windows.
  for (const T of [1, 2, 7, 16, 33, 64, 100]) {
    for (const [BR, BC] of [[32, 32], [32, 16], [16, 32], [8, 16], [8, 8]]) {
      for (const window of [null, 1, 5, 40]) {
        const mask = { causal: true, window: window ?? 0, positionOffset: 0, hasKeyRange: false };
        assert.is(tiledEntries(T, { BR, BC }, window), tileWork(T, T, BR, BC, mask).entries, `T ${T} ${BR}x${BC} window ${window}`);
      }
    }
  }
  // And the kernels' FLOPs from it: forward 4 D, dK/dV 8 D, dQ 6 D per entry of their own tiles.
  const dims = { B: 1, H: 2, KVH: 2, T: 33, S: 33, D: 8 }, mask = { causal: true, window: 0, positionOffset: 0, hasKeyRange: false };
  const fwd = attentionForwardCall(LIMITS, dims, mask, 1).constants!, dkdv = attentionBackwardDkDvCall(LIMITS, dims, mask, 1).constants!, dq = attentionBackwardDqCall(LIMITS, dims, mask, 1).constants!;
  assert.is(attentionForwardCall(LIMITS, dims, mask, 1).cost.flops, 4 * 8 * 2 * tiledEntries(33, { BR: fwd.BR, BC: fwd.BC }, null));
  assert.is(attentionBackwardDkDvCall(LIMITS, dims, mask, 1).cost.flops, 8 * 8 * 2 * tiledEntries(33, { BR: dkdv.BR, BC: dkdv.BC }, null));
  assert.is(attentionBackwardDqCall(LIMITS, dims, mask, 1).cost.flops, 6 * 8 * 2 * tiledEntries(33, { BR: dq.BR, BC: dq.BC }, null));
});

const seq = [{ count: 1, promptLength: 3, responseLength: 2 }]; // T 5
const PLAN: AttentionPlan = { forward: { BR: 2, BC: 2 }, dkdv: { BR: 2, BC: 2 }, dq: { BR: 2, BC: 2 }, decodeChunk: 4 };

test('GPT-NeoX forward by hand: T 5, head on every position, token log-probs', () => {
  // Per token: products 2·(2 layers · 768) = 3072; bias adds 2·(24 + 8 + 32 + 8) = 144; head 2·8·16 = 256;
  // per layer the LN pair (parallel residual) 16·8 = 128, GELU 36·32 = 1152, rotary 34·(4 + 4 pairs) = 272, residual adds 2·8 = 16; final LN 88.
  // Log-probs: 4·16 per predicting position (4 of them) and 2 per position: 266. Attention 2·4·(2·4) = 64 per key, 15 keys.
  const f = forwardBreakdown(neox, { sequences: seq, head: 'all' });
  assert.equal(f, parts({ matmul: 15360, bias: 720, head: 1280, norm: 1720, activation: 11520, rotary: 2720, residual: 160, logits: 266, attention: 960, attentionExecuted: 960 }));
  assert.is(totalOf(f), 34706);
  assert.is(phaseFlops(neox, 'reference', { sequences: [{ ...seq[0], count: 2 }], head: 'all' }), 2 * 34706);
  // Tiles of 2 x 2 execute 17 entries for 15 visible: 64·17 = 1088; the useful count keeps 960.
  const tiled = forwardBreakdown(neox, { sequences: seq, head: 'all', attentionPlan: PLAN });
  assert.is(tiled.attentionExecuted, 1088);
  assert.is(totalOf(tiled), 34706 + 128);
  assert.is(usefulOf(tiled), 34706);
});

test('GPT-NeoX backward by hand, full fine-tuning', () => {
  // dX and dW: 2·15360; bias gradients 720; the head's 2·1280; GELU' 38·32·10 = 12160; rotary 2720;
  // LN' 15·8 per norm and token: 5 norms · 5 tokens = 3000; residual: x is read by ln1, ln2 and the add, 2 sums
  // of 8 per layer: 160. Attention: dO·O 2·8·5 per layer, dK/dV 8·8 and dQ 6·8 per entry (15): (80 + 960 + 720)·2
  // = 3520, useful 2.5·960 = 2400. Log-probs' backward 4·16 on all 5 positions and the mask 1 each: 325. Embedding 5·8.
  const b = backwardBreakdown(neox, { sequences: seq, head: 'all' });
  assert.equal(b, parts({ matmul: 30720, bias: 720, head: 2560, norm: 3000, activation: 12160, rotary: 2720, residual: 160, embedding: 40, logits: 325, attention: 2400, attentionExecuted: 3520 }));
  assert.is(totalOf(b), 55925);
  // In 3 vocabulary chunks the head recomputes its logits (1280) and sums dX twice more: 2 adds per position and hidden element.
  assert.is(backwardBreakdown(neox, { sequences: seq, head: 'all', headChunks: 3 }).head, 2560 + 1280 + 2 * 5 * 8);
  // Tiles: dK/dV and dQ each over 17 entries: (80 + 8·8·17 + 6·8·17)·2 = 3968.
  assert.is(backwardBreakdown(neox, { sequences: seq, head: 'all', attentionPlan: PLAN }).attentionExecuted, 3968);
  // A tied embedding takes the head's dW once per pass; micro-batches after the first add their gradients.
  const tied = backwardBreakdown({ ...neox, tieWordEmbeddings: true }, { sequences: seq, head: 'all', passes: 3, accumulatedElements: 1000 });
  assert.is(tied.embedding, 40 + 3 * 128);
  assert.is(tied.accumulate, 1000);
});

test('Mistral by hand: windowed GQA, RMSNorm, SwiGLU; a reward model\'s score on the last token', () => {
  // Per token: products 3840; RMSNorm 4·16 (3 norms); SwiGLU 7·24; rotary 34·(4·2 + 2·2) = 408; adds 2·16.
  // T 6, window 3: 15 keys, 1 layer · 4·16 = 64 each. LM head 2·16·32 = 1024 per position; log-probs 4·32·5 + 2·6.
  const s6 = [{ count: 1, promptLength: 4, responseLength: 2 }];
  assert.equal(forwardBreakdown(mistral, { sequences: s6, head: 'all' }), parts({ matmul: 23040, head: 6144, norm: 1152, activation: 1008, rotary: 2448, residual: 192, logits: 652, attention: 960, attentionExecuted: 960 }));
  // A reward model: the score 1·16 on the last token, no log-probs.
  const reward = { ...mistral, head: 'score' as const };
  assert.is(phaseFlops(mistral, 'reward-forward', { sequences: s6, head: 'last', model: reward }), 23040 + 32 + 1152 + 1008 + 2448 + 192 + 960);
  // Its backward: dX and dW 46080, the score's 64; RMSNorm' 10·16 · 3 · 6; SwiGLU' 17·24·6; rotary 2448; sums per token:
  // the norm's output read by q, k, v (2·16), by gate and up (16), x and h each by a norm and an add (16 + 16): 480.
  // Attention: 2·16·6 + 8·16·15 + 6·16·15 = 3552. The gather's backward 16 and the embedding's 6·16.
  assert.equal(backwardBreakdown(mistral, { sequences: s6, head: 'last', model: reward }), parts({ matmul: 46080, head: 64, norm: 2880, activation: 2448, rotary: 2448, residual: 480, embedding: 112, attention: 2400, attentionExecuted: 3552 }));
});

test('LoRA by hand: adapters, dropout, and the backward pruned where nothing trains', () => {
  const lora = { r: 2, targets: ['q_proj', 'v_proj'], dropout: 0.1 };
  const s6 = [{ count: 1, promptLength: 4, responseLength: 2 }];
  // Forward per token: q dropout 16 + 2·2·16 + the scale 2 + 2·2·16 + the add 16 = 162; v 16 + 64 + 2 + 32 + 8 = 122.
  assert.is(forwardBreakdown(mistral, { sequences: s6, head: 'all', lora, training: true }).lora, 6 * 284);
  assert.is(forwardBreakdown(mistral, { sequences: s6, head: 'all', lora }).lora, 6 * 252); // no dropout without grad
  // Backward of the only layer (its input, the frozen embedding's, needs no gradient): the adapters without dX through
  // A (q 4·2·16 + 2 + 2·2·16 = 194, v 4·2·8 + 2 + 64 = 130), no base q/k/v dX, rotary' on q only (34·8), attention
  // (dV and dQ are needed), o, gate, up, down dX (512 + 3·768), SwiGLU', the second RMSNorm' and the final one,
  // sums: gate/up's input (16), h (16). The head frozen: dX only.
  assert.equal(backwardBreakdown(mistral, { sequences: s6, head: 'all', lora }), parts({
    matmul: 6 * 2816, head: 6144, lora: 6 * 324, norm: 6 * 320, activation: 2448, rotary: 6 * 272, residual: 6 * 32, logits: 4 * 32 * 6 + 6, attention: 2400, attentionExecuted: 3552,
  }));
  // GPT-NeoX, query_key_value only: layer 1 runs every dX and the adapter's dX through A; layer 0 only its attention
  // branch (dense dX 2·8·8): its MLP reads ln2 of the frozen embedding, its qkv input needs no gradient.
  const qkv = { r: 1, targets: ['query_key_value'] };
  const n = backwardBreakdown(neox, { sequences: seq, head: 'all', lora: qkv });
  assert.is(n.matmul, 5 * (1536 + 128));
  assert.is(n.lora, 5 * ((4 * 24 + 1 + 2 * 8 + 2 * 8) + (4 * 24 + 1 + 2 * 8)));
  assert.is(n.activation, 5 * 38 * 32); // layer 1's GELU only
  assert.is(n.norm, 5 * 3 * 15 * 8); // layer 1's two LNs and the final one
  assert.is(n.residual, 5 * (8 + 2 * 8)); // layer 1: ln1's output (base and adapter dX), x (ln1, ln2, the add)
  assert.is(n.bias + n.embedding, 0);
  // Trainable elements and the merge: 2·(16 + 16) + 2·(16 + 8) = 112; (2·2 + 2)·(16·16 + 16·8) = 2304.
  assert.is(loraElements(mistral, lora), 112);
  assert.is(loraParamSpecs(mistral, lora).reduce((k, s) => k + s.shape[0] * s.shape[1], 0), 112);
  assert.is(mergeFlops(mistral, { lora }), 2304);
  // The head as a target: its adapter trains, its weight gets dX only; the two dX of its input are summed.
  const h = backwardBreakdown(mistral, { sequences: s6, head: 'all', lora: { r: 2, targets: ['lm_head'] } });
  assert.is(h.matmul + h.rotary + h.attention, 0); // nothing in the trunk trains: no trunk backward
  assert.is(h.lora, 6 * (4 * 2 * 32 + 2 + 2 * 2 * 16));
});

/** The passes of `count` rows of a prompt of P tokens and m new tokens, generated alone: the prompt pass, then m - 1 decode steps. */
const rowPasses = (count: number, P: number, m: number) => (m === 0 ? [] : [{ count, tokens: P, filled: 0 }, ...Array.from({ length: m - 1 }, (_, i) => ({ count, tokens: 1, filled: P + i }))]);

test('generation by hand: prompt pass, decode steps, the merge of decode chunks, the sampler', () => {
  // Prompt 3, 3 new tokens: the trunk over 3 + 2 fed-back tokens, the head on 3 positions, 6 + 4 + 5 keys;
  // greedy sampling 3 per logit of 3 samples of 16 logits.
  const g = { passes: rowPasses(1, 3, 3) };
  assert.equal(generationBreakdown(neox, g), parts({ matmul: 15360, bias: 720, head: 768, norm: 1720, activation: 11520, rotary: 2720, residual: 160, sampler: 144, attention: 960, attentionExecuted: 960 }));
  assert.is(phaseFlops(neox, 'generation', { passes: rowPasses(4, 3, 3) }), 4 * 34072);
  assert.is(phaseFlops(neox, 'generation', { passes: [] }), 0);
  // A row whose columns moved (a batch rebuilt with joiners, KVCache.joined) counts its keys at the columns it ran
  // at: 6 in the prompt pass, then 4 and 8 (its second step right-aligned 3 columns further), 64 a key.
  const moved = generationBreakdown(neox, { passes: [{ count: 1, tokens: 3, filled: 0 }, { count: 1, tokens: 1, filled: 3 }, { count: 1, tokens: 1, filled: 7 }] });
  assert.is(moved.attention, 64 * (6 + 4 + 8));
  assert.is(moved.matmul, 15360);
  assert.throws(() => generationBreakdown(neox, { passes: [{ count: 1, tokens: 2, filled: 3 }] }), /one token a row/);
  // Tiles 2 x 2 on the prompt: 7 entries for 6 visible (+64); decode chunks of 4 keys: position 3 has 4 keys (1 chunk:
  // normalised in the kernel, 1·8 per layer), position 4 has 5 (2 chunks merged: 5·8 per chunk and layer); 2 layers:
  // 2·(8 + 80) = 176.
  assert.is(generationBreakdown(neox, { ...g, attentionPlan: PLAN }).attentionExecuted, 960 + 64 + 176);
  // Sampling at temperature 1: one counting and one weighted pass, 9 per logit; top-k adds a bisection, top-p two passes more.
  assert.is(generationBreakdown(neox, { ...g, sampling: { temperature: 1, topK: 0, topP: 1 } }).sampler, 3 * 16 * 9);
  assert.is(samplerFlopsPerLogit({ temperature: 1, topK: 5, topP: 1 }, 16), 3 + 6 * 33);
  assert.is(samplerFlopsPerLogit({ temperature: 1, topK: 0, topP: 0.9 }, 16), 6 + 6 * 34);
  // Mistral, prompt 4, window 3: keys 1+2+3+3 in the prompt pass, 3+3 in two steps.
  assert.is(generationBreakdown(mistral, { passes: rowPasses(1, 4, 3) }).attention, 64 * 15);
});

test('a run: every phase, zero where absent; the optimizer at 15 + 2 (grad norm) per element or as given', () => {
  const run = runAnalyticFlops(neox, {
    generation: { passes: rowPasses(1, 3, 3) },
    'policy-forward': { sequences: seq, head: 'all' },
    'policy-backward': { sequences: seq, head: 'all' },
    optimizer: { trainableElements: 1000 },
  });
  assert.equal(run, { generation: 34072, reference: 0, 'policy-forward': 34706, 'policy-backward': 55925, 'policy-backward-recompute': 0, 'reward-forward': 0, 'reward-backward': 0, 'reward-backward-recompute': 0, optimizer: 17000, merge: 0, evaluation: 0 });
  // The evaluation's forwards count as a reference's, its answers as a generation.
  assert.is(phaseFlops(neox, 'evaluation', { sequences: seq, head: 'all' }), phaseFlops(neox, 'reference', { sequences: seq, head: 'all' }));
  assert.is(phaseFlops(neox, 'evaluation', { passes: rowPasses(1, 3, 3) }), 34072);
  assert.is(phaseFlops(neox, 'optimizer', { trainableElements: 1000, flopsPerElement: M.RMSPROP_FLOPS_PER_ELEMENT }), 14000);
  assert.is(phaseFlops(neox, 'optimizer', { trainableElements: 1000, gradNorm: false }), 15000);
  assert.throws(() => phaseFlops(neox, 'reference', { sequences: [{ count: 1, promptLength: -1, responseLength: 2 }], head: 'all' }), /non-negative/);
});

test('gradient checkpointing: every layer\'s training forward again in the backward, and Workloads counts it per model', () => {
  const forward = forwardBreakdown(neox, { sequences: seq, head: 'all' });
  const recompute = recomputeBreakdown(neox, { sequences: seq, head: 'all' });
  // The layers' forward: no head, no log-probs, no final norm (a pair per layer, 16 per element, remains; the final 11 goes).
  assert.equal(recompute, { ...forward, head: 0, logits: 0, norm: forward.norm * (16 * neox.layers) / (16 * neox.layers + 11) });
  const w = new Workloads(neox, { attentionPlan: () => PLAN, limits: LIMITS, gradientCheckpointing: { policy: true } });
  for (let k = 0; k < 3; k++) w.trained('policy', 1, 5, 'all', false);
  w.trained('reward', 1, 5, 'last', false);
  const a = w.analytic();
  assert.is(a['policy-backward-recompute'], 3 * totalOf(recomputeBreakdown(neox, { sequences: seq, head: 'all', attentionPlan: PLAN })));
  assert.is(a['reward-backward-recompute'], 0, 'the reward model does not checkpoint here');
});

test('Workloads: training forwards, micro-batches added up, each model\'s optimizer, the recorded plan', () => {
  const w = new Workloads(neox, { rewardConfig: { ...neox, head: 'score' }, optimizerFlopsPerElement: M.RMSPROP_FLOPS_PER_ELEMENT, attentionPlan: () => PLAN, limits: LIMITS });
  for (let k = 0; k < 3; k++) w.trained('policy', 1, 5, 'all', false); // one update of 3 micro-batches
  w.optimizer(100);
  w.trained('reward', 2, 5, 'last', false);
  w.optimizer(50); // the reward model's AdamW, one micro-batch
  w.forward('policy-forward', 1, 5, 'all'); // a no-grad scoring of samples
  const b = w.breakdown();
  assert.is(b['policy-backward'].accumulate, 200);
  assert.is(b['reward-backward'].accumulate, 0);
  assert.is(b.optimizer.optimizer, 100 * (12 + 2) + 50 * (15 + 2));
  assert.is(w.data.forward.find((f) => f.phase === 'policy-backward')!.passes, 3);
  const forward = forwardBreakdown(neox, { sequences: seq, head: 'all', attentionPlan: PLAN });
  assert.is(w.analytic()['policy-forward'], 4 * totalOf(forward));
  assert.is(w.useful()['policy-forward'], 4 * usefulOf(forward));
});

test('Workloads under mixed precision: the policy\'s training passes on the tensor cores\' plan, every other pass on the f32 kernels\', across a resume', () => {
  // The tensor cores' tiles (attentionKernels under autocast) differ from the f32 kernels': at T 5 they execute other entries.
  const TENSOR_CORES: AttentionPlan = { forward: { BR: 4, BC: 2 }, dkdv: { BR: 2, BC: 4 }, dq: { BR: 4, BC: 2 }, decodeChunk: 4 };
  const on = (attentionPlan: AttentionPlan) => ({ sequences: seq, head: 'all' as const, attentionPlan });
  assert.is.not(totalOf(forwardBreakdown(neox, on(TENSOR_CORES))), totalOf(forwardBreakdown(neox, on(PLAN))));
  const opts: WorkloadsOptions = {
    rewardConfig: { ...neox, head: 'score' }, limits: LIMITS, attentionPlan: (_, mixed) => (mixed ? TENSOR_CORES : PLAN), mixedPrecision: { policy: true }, gradientCheckpointing: { policy: true },
  };
  const w = new Workloads(neox, opts);
  w.trained('policy', 1, 5, 'all', false); // inside autocast: TrainStep has the run's loss scaler
  w.forward('policy-forward', 1, 5, 'all'); // the policy scoring its samples, outside the micro-batches
  w.forward('reference', 1, 5, 'all');
  w.trained('reward', 1, 5, 'last', false); // the reward model's TrainStep has no loss scaler
  w.generation(rowPasses(1, 3, 3), false, 3);
  const plans = (x: Workloads) => x.data.forward.map((f) => `${f.phase} ${f.training ? 'training' : 'scoring'} ${JSON.stringify(f.attentionPlan) === JSON.stringify(TENSOR_CORES) ? 'tensor cores' : 'f32'}`);
  assert.equal(plans(w), ['policy-forward training tensor cores', 'policy-backward training tensor cores', 'policy-forward scoring f32', 'reference scoring f32', 'reward-forward training f32', 'reward-backward training f32']);
  assert.equal(w.data.generation[0].attentionPlan, PLAN);
  const a = w.analytic();
  assert.is(a['policy-forward'], totalOf(forwardBreakdown(neox, on(TENSOR_CORES))) + totalOf(forwardBreakdown(neox, on(PLAN))));
  assert.is(a['policy-backward'], totalOf(backwardBreakdown(neox, on(TENSOR_CORES))));
  // The replayed layers (under autocast as their forward was) on the forward's tensor-core plan.
  assert.is(a['policy-backward-recompute'], totalOf(recomputeBreakdown(neox, on(TENSOR_CORES))));
  assert.is(a.reference, totalOf(forwardBreakdown(neox, on(PLAN))));

  // A resume (workloads.json of a checkpoint): the same device adds to the saved records, another (no tensor cores) beside them.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-workloads-'));
  try {
    fs.writeFileSync(path.join(dir, WORKLOADS_FILE), JSON.stringify(w.toJSON()));
    const same = new Workloads(neox, opts);
    assert.ok(same.restore(dir));
    same.trained('policy', 1, 5, 'all', false);
    assert.equal(plans(same), plans(w));
    assert.is(same.data.forward[0].passes, 2);
    const other = new Workloads(neox, { ...opts, attentionPlan: () => PLAN });
    assert.ok(other.restore(dir));
    other.trained('policy', 1, 5, 'all', false);
    assert.equal(plans(other).slice(6), ['policy-forward training f32', 'policy-backward training f32']);
    // A file of version 4 (generation as rows by prompt and new tokens) is read as the passes those rows ran.
    fs.writeFileSync(path.join(dir, WORKLOADS_FILE), JSON.stringify({ ...w.toJSON(), version: 4, generation: [{ count: 1, promptLength: 3, newTokens: 3, lora: false, attentionPlan: PLAN }] }));
    const old = new Workloads(neox, opts);
    assert.ok(old.restore(dir));
    assert.is(old.analytic().generation, w.analytic().generation);
    assert.equal(old.data.generation.map(({ count, tokens, filled }) => [count, tokens, filled]), [[1, 3, 0], [1, 1, 3], [1, 1, 4]]);
    // A file of version 3 (one plan per model) is not read: its counts would be taken for the wrong kernels.
    fs.writeFileSync(path.join(dir, WORKLOADS_FILE), JSON.stringify({ ...w.toJSON(), version: 3 }));
    assert.not.ok(new Workloads(neox, opts).restore(dir));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the report: table and JSON from ledger rows, analytic and useful counts', () => {
  const row = (key: string, flops: number, ns: number, timed: number): LedgerRow => ({ key, flops, bytesRead: 3e6, bytesWritten: 1e6, dispatches: 5, ns, timed });
  const rows = auditRows([row('policy-backward', 4e9, 0, 0), row('policy-forward', 2.2e9, 2e6, 5), row('other', 1e6, 0, 0)], { 'policy-forward': 2.2e9, 'policy-backward': 4e9 }, { 'policy-forward': 2e9, 'policy-backward': 3.5e9 });
  assert.equal(rows.map((r) => r.phase), ['policy-forward', 'policy-backward', 'other']);
  const json = auditJson(rows);
  assert.equal(json['policy-forward'], { ledger_flops: 2.2e9, analytic_flops: 2.2e9, ratio: 1, useful_flops: 2e9, bytes: 4e6, gpu_ms: 2 });
  assert.equal(json['policy-backward'], { ledger_flops: 4e9, analytic_flops: 4e9, ratio: 1, useful_flops: 3.5e9, bytes: 4e6, gpu_ms: null });
  assert.is(json.other.ratio, null);
  const table = auditTable(rows, { peakTflops: 1 });
  console.log(table.split('\n').map((l) => `  ${l}`).join('\n'));
  const lines = table.split('\n');
  assert.is(lines.length, 5); // header, three phases, total
  assert.ok(lines[0].endsWith('MFU@1TF'), lines[0]);
  // The head names a peak in three figures, in GF below 1 TFLOP/s (the demo's lavapipe probe: 0.0165...).
  assert.equal([0.016526826317871255, 0.5, 1, 51.49, 989.5].map(peakLabel), ['16.5GF', '500GF', '1TF', '51.5TF', '990TF']);
  // MFU on the useful FLOPs: 2 GFLOP in 2 ms = 1 TFLOP/s, 100% of a 1 TFLOP/s peak (the executed 2.2 would say 110%).
  assert.ok(/policy-forward .* 1\.000 +2\.000000 +2\.000 +100\.00%$/.test(lines[1]), lines[1]);
  assert.ok(/policy-backward .* 1\.000 +3\.500000 +— +—$/.test(lines[2]), lines[2]);
  assert.ok(/^total .* 1\.000 +5\.500000 +2\.000 +100\.00%$/.test(lines[4]), lines[4]);
  // Without useful counts they default to the analytic ones.
  assert.is(auditRows([row('merge', 1, 0, 0)], { merge: 1 })[0].usefulFlops, 1);
});

test.run();
