// The analytic FLOP model of each phase of a reward-learning run, in one place: what a correct implementation
// must execute, from the configuration and the token counts, to set beside what the ledger counted
// (engine/ledger.ts) and what the GPU took. It shares no code with the kernels' costs: per-element counts are
// named constants below, each equal to the count its kernel's spec states (kernels/*.ts, cited), so that
// ledger / analytic = 1 means every dispatch did what the arithmetic needs and nothing else.
//
// Forward of a causal LM, per token: 2 N_matmul, N_matmul the weights of the matrix products (GPT-NeoX:
// query_key_value, dense, dense_h_to_4h, dense_4h_to_h; Mistral: q/k/v/o_proj, gate/up/down_proj), a bias add
// per output of a biased product, the head (C x V; a reward model's score C x 1) at the positions where it is
// applied; per layer the two norms, rotary on q and k, the MLP's activation, the two residual adds; the final
// norm on every position; the embedding lookup is no arithmetic. An LM's loss reads token log-probs (a
// log-softmax per predicting position) and sums them under the response mask; a reward model's score head
// reads the last real token (a row gather, no arithmetic forward).
//
// Attention, per layer and query: QKᵀ and PV, 4 H D per key (H query heads of D dims; grouped K/V heads change
// the k/v widths, not this). Two counts, both kept in every breakdown:
//   attention          the useful FLOPs: the visible keys only, min(position + 1, window) per query (the
//                      issue's 4·L·d·visible keys); backward FlashAttention-2's five products, 2.5x. MFU is
//                      computed on this count, so that masked work is never mistaken for useful work.
//   attentionExecuted  what the tiled kernels execute: every BR x BC tile on or below the diagonal (and inside
//                      the window) whole, masked entries of the diagonal tiles included, with the tile sizes of
//                      the kernels that ran it (the f32 kernels' or, under mixed precision, the tensor cores';
//                      recorded with the workload: AttentionPlan); backward the dK/dV kernel (S, dP, dV, dK: 8 D
//                      per entry of its tiles) and the dQ kernel (S, dP, dQ: 6 D per entry of its tiles) and the
//                      row dot products dO·O (2 D per row); decode steps the visible keys (one query row, no
//                      tiles) and the merge of the key chunks (5 D per chunk). The rows kernels (lavapipe) run
//                      their last products (P V, dS K; dV, dK) only on the blocks of 4 keys or rows that see
//                      something (Tiles' BCV, BRV: tiledFlopsPerDim).
//                      The analytic total, compared with the ledger within 2%, counts this one.
// The decision: the 2% check is about bookkeeping (does every dispatch land where the model says), so it
// compares like with like, the executed tiles; the waste of tiling is a property of the kernels, shown as
// attentionExecuted / attention, and kept out of MFU.
//
// Backward: a product computes dX when its input needs a gradient and dW (and its bias gradient, one add per
// output) when its weight trains, 2·in·out each. A tensor needs a gradient when it depends on something that
// trains: under full fine-tuning everything (the embedding trains); under LoRA (frozen base, norms, biases,
// embedding) only what lies after the first adapter, so the layers below the first adapted one, and the
// branches of that layer that no adapter feeds, run no backward at all (the engine's tape prunes them too). An
// adapter x -> s·dropout(x) Aᵀ Bᵀ costs forward dropout (training, p > 0: in), x Aᵀ (2 r in), the scale (r),
// Bᵀ (2 r out) and the add into the base output (out); backward dB and the gradient of the scaled down-projection
// (2 r out each), the scale (r), dA (2 r in) and, when x needs a gradient, dX through A (2 r in) and the dropout
// (in). A tensor read by n ops that send it gradients sums them: (n - 1) adds per element (the residual
// stream, a norm's output read by several products or by a base product and its adapter). Norms, the
// activation and rotary run their backward kernels where their input needs a gradient; the embedding gradient
// is one add per token element; a tied embedding adds the head's dW into it once per backward pass; every
// micro-batch after a step's first adds its gradients into the parameters' (one add per trainable element).
//
// Generation: a prompt pass over each (left-padded) prompt with the final norm on every position, the head on
// the last only, then one decode step per further new token (the last new token is never fed back:
// models/causal_lm.ts), the head applied, attending over the cache; the sampler reads every logit of each
// step's rows a number of times set by the sampling (kernels/sample_tokens.ts).
//
// Not modelled (together about 0.02% of a backward phase at the tiny sizes of the tests, less at real ones): the
// loss's per-sequence scalars (a few flops per sequence or pair), the second stage of the norms' weight-gradient
// reductions (one add per block of 16-64 rows and column), the grad norm's final sum of partials, and the merge
// of the fused head's chunk pairs (a few flops per row and chunk). SFT's cross-entropy is not a phase of this audit.
//
// Phases: generation, reference (a frozen model's log-probs), policy-forward (every forward of the policy: its
// training forwards and a no-grad scoring of its own samples alike), policy-backward, policy-backward-recompute
// (with --gradient-checkpointing: each layer's forward replayed in the backward), reward-forward (the reward
// model's training forwards and its scoring of samples), reward-backward, reward-backward-recompute, optimizer
// (grad norm and update), merge (LoRA merges), evaluation (the held-out metrics: their no-grad forwards, as a
// reference's, and the demo's greedy answers, as a generation).
import type { GenerationPass } from '../models/causal_lm.ts';
import type { ModelConfig } from '../models/config.ts';
import type { LoraTargets } from '../models/lora.ts';
import type { LedgerRow } from '../engine/ledger.ts';

export const PHASES = ['generation', 'reference', 'policy-forward', 'policy-backward', 'policy-backward-recompute', 'reward-forward', 'reward-backward', 'reward-backward-recompute', 'optimizer', 'merge', 'evaluation'] as const;
export type Phase = (typeof PHASES)[number];

// ---- per-element counts, as the kernels' specs state them ----

/** kernels/layernorm_forward.ts: the shifted sum (2), the squared deviation (4), the output (5); the pair's two outputs. */
export const LAYER_NORM_FORWARD_FLOPS = 11;
export const LAYER_NORM_PAIR_FORWARD_FLOPS = 16;
/** kernels/layernorm_backward.ts: the row sums (5), xhat, dx and the two weight-gradient partials (10). */
export const LAYER_NORM_BACKWARD_FLOPS = 15;
/** kernels/rmsnorm_forward.ts. */
export const RMS_NORM_FORWARD_FLOPS = 4;
/** kernels/rmsnorm_backward.ts: the row sum (3), xhat, dx and the partial (7). */
export const RMS_NORM_BACKWARD_FLOPS = 10;
/** kernels/activation.ts: exact GELU (erf by a polynomial and an exponential), and its derivative times dy (37 + 1). */
export const GELU_FORWARD_FLOPS = 36;
export const GELU_BACKWARD_FLOPS = 38;
/** kernels/activation.ts: SwiGLU's silu(gate)·up (6 + 1), and dgate, dup in one pass (6 + 8 + 3). */
export const SWIGLU_FORWARD_FLOPS = 7;
export const SWIGLU_BACKWARD_FLOPS = 17;
/** kernels/rotary.ts and the fused generation kernel kernels/qkv_rotary.ts, per rotated pair of dims, forward or inverse: the angle, range reduction, sin and cos, the rotation. */
export const ROTARY_FLOPS_PER_PAIR = 34;
/** kernels/binary.ts: a residual add, or the sum of two gradients of one tensor (engine/autodiff.ts), per element. */
export const ADD_FLOPS = 1;
/** kernels/embedding.ts: the embedding gradient adds each token's output gradient row once (and the reward model's row gather likewise). */
export const EMBEDDING_BACKWARD_FLOPS = 1;
/** kernels/token_logprobs.ts: per logit of a predicting position, compare, subtract, exponentiate, add; backward 4 per logit of every position. */
export const TOKEN_LOGPROBS_FORWARD_FLOPS = 4;
export const TOKEN_LOGPROBS_BACKWARD_FLOPS = 4;
/** A sequence's log-prob, Σ_t mask·logp (kernels/binary.ts, kernels/reduce_sum.ts): a multiply and an add per position; backward the multiply. */
export const SEQUENCE_SUM_FORWARD_FLOPS = 2;
export const SEQUENCE_SUM_BACKWARD_FLOPS = 1;
/** kernels/dropout.ts and its backward: one multiply per element. */
export const DROPOUT_FLOPS = 1;
/** kernels/attention_forward.ts (and the tensor-core and decode kernels): Q Kᵀ and P V, 2 D each, per score entry computed. */
export const ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM = 4;
/** kernels/attention_backward_dkdv.ts: S, dP, dV, dK, 2 D each per entry of its tiles. */
export const ATTENTION_DKDV_FLOPS_PER_ENTRY_DIM = 8;
/** kernels/attention_backward_dq.ts: S, dP, dQ. */
export const ATTENTION_DQ_FLOPS_PER_ENTRY_DIM = 6;
/** kernels/attention_delta.ts: delta = rowsum(dO · O), 2 per output element. */
export const ATTENTION_DELTA_FLOPS = 2;
/** kernels/attention_decode.ts: merging a row's key chunks, 5 per dim and chunk; a single chunk divides once per dim. */
export const DECODE_MERGE_FLOPS = 5;
export const DECODE_NORMALIZE_FLOPS = 1;
/** FlashAttention-2's backward (five products) over its forward (two): the useful backward attention. */
export const FLASH_ATTENTION_2_BACKWARD_FACTOR = 2.5;
/** kernels/sample_tokens.ts: per logit, 3 per counting pass, 6 per weighted pass; a bisection is 32 passes. */
export const SAMPLER_COUNTING_PASS_FLOPS = 3;
export const SAMPLER_WEIGHTED_PASS_FLOPS = 6;
export const SAMPLER_BISECTION_PASSES = 32;
/** kernels/squared_sum.ts: the grad norm's Σ g², a multiply and an add per gradient element. */
export const GRAD_NORM_FLOPS_PER_ELEMENT = 2;
/** kernels/adamw.ts: the moments, the bias corrections, decay and the gradient scale (clipping) folded in. */
export const ADAMW_FLOPS_PER_ELEMENT = 15;
/** kernels/rmsprop.ts. */
export const RMSPROP_FLOPS_PER_ELEMENT = 12;
/** kernels/accumulate.ts: a micro-batch's gradient added into a parameter's. */
export const ACCUMULATE_FLOPS = 1;

// ---- workloads ----

/** Sequences of one shape: `count` of them, each a prompt and a response (the response's EOS included). */
export interface SequenceGroup { count: number; promptLength: number; responseLength: number }

/** Where the head is applied: every position; the positions whose logits predict a response token (responseLength of them); the last. */
export type HeadPositions = 'all' | 'response' | 'last';

/** Adapters: rank, targets, and the dropout on their input while training (0 for none). */
export interface LoraWorkload { r: number; targets: LoraTargets; dropout?: number }

/**
 * Tile sizes: BR query rows by BC keys; BCV keys (the forward's P V, dQ's dS K) or BRV rows (dV and dK) per block of
 * the last products, where the kernel skips the blocks of a tile that see nothing (the rows kernels on lavapipe).
 */
export interface Tiles { BR: number; BC: number; BCV?: number; BRV?: number }

/**
 * The tiles of the attention kernels that ran a workload, on the device that ran them (engine/ops/attention.ts
 * attentionKernels: the f32 kernels' forwardTiles, dkdvTiles, dqTiles or their rows kernels' (forwardChoice, dqChoice,
 * dkdvChoice), or under mixed precision the tensor cores'
 * layouts; attention_decode.ts DECODE_CHUNK keys per chunk). Absent: untiled kernels, the executed attention
 * equals the visible keys.
 */
export interface AttentionPlan { forward: Tiles; dkdv: Tiles; dq: Tiles; decodeChunk: number }

/** A forward (or the backward of that forward) over whole sequences. */
export interface ForwardWorkload {
  sequences: readonly SequenceGroup[];
  head: HeadPositions;
  /** Adapters on a frozen base; absent: every weight trained. */
  lora?: LoraWorkload;
  /** The model of this phase when it is not the run's (a reward model, a reference of another size). */
  model?: ModelConfig;
  /** A training forward (the adapters' dropout runs); false for no-grad scoring. */
  training?: boolean;
  /** The loss reads token log-probs of the logits (default for an LM head) or not ('none': a score head's value). */
  readout?: 'logprobs' | 'none';
  attentionPlan?: AttentionPlan;
  /** Backward phases: forward/backward passes the sequences took (a tied embedding's gradient is added once per pass). */
  passes?: number;
  /** Backward phases: parameter elements into which a later micro-batch's gradient was added (Σ over steps of (micro-batches - 1) x trainable). */
  accumulatedElements?: number;
  /** Overrides FLASH_ATTENTION_2_BACKWARD_FACTOR for the useful backward attention. */
  attentionBackwardFactor?: number;
  /** Backward phases: the vocabulary chunks the fused head ran in per pass (kernels/token_logprobs.ts headChunkRows; 1 by default). */
  headChunks?: number;
}


/** How tokens were drawn: temperature 0 is greedy; topK 0 and topP 1 leave the distribution whole. */
export interface Sampling { temperature: number; topK: number; topP: number }

/** Generation's model passes (models/causal_lm.ts GenerationPass: rows of a shape, prompt passes and decode steps). */
export interface GenerationWorkload { passes: readonly GenerationPass[]; lora?: LoraWorkload; model?: ModelConfig; sampling?: Sampling; attentionPlan?: AttentionPlan }

/** The update of `trainableElements` (summed over updates) at `flopsPerElement` (AdamW's by default), with the grad norm unless gradNorm is false. */
export interface OptimizerWorkload { trainableElements: number; flopsPerElement?: number; gradNorm?: boolean }

export interface MergeWorkload { lora: LoraWorkload; model?: ModelConfig }

export interface PhaseWorkloads {
  generation: GenerationWorkload;
  reference: ForwardWorkload;
  'policy-forward': ForwardWorkload;
  'policy-backward': ForwardWorkload;
  'reward-forward': ForwardWorkload;
  'reward-backward': ForwardWorkload;
  'policy-backward-recompute': ForwardWorkload;
  'reward-backward-recompute': ForwardWorkload;
  optimizer: OptimizerWorkload;
  merge: MergeWorkload;
  evaluation: ForwardWorkload | GenerationWorkload;
}

/** One matrix product of a layer (or the head): PEFT's module name, in and out features, whether it has a bias. */
export interface Linear { module: string; in: number; out: number; bias: boolean }

/** The products of one layer, as models/gpt_neox_params.ts and models/mistral_params.ts lay them out. */
export function layerLinears(c: ModelConfig): Linear[] {
  const C = c.hidden, I = c.intermediate;
  if (c.modelType === 'gpt_neox') {
    return [
      { module: 'query_key_value', in: C, out: 3 * C, bias: c.attentionBias },
      { module: 'dense', in: C, out: C, bias: c.attentionBias },
      { module: 'dense_h_to_4h', in: C, out: I, bias: true },
      { module: 'dense_4h_to_h', in: I, out: C, bias: true },
    ];
  }
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  return [
    { module: 'q_proj', in: C, out: q, bias: false },
    { module: 'k_proj', in: C, out: kv, bias: false },
    { module: 'v_proj', in: C, out: kv, bias: false },
    { module: 'o_proj', in: q, out: C, bias: false },
    { module: 'gate_proj', in: C, out: I, bias: false },
    { module: 'up_proj', in: C, out: I, bias: false },
    { module: 'down_proj', in: I, out: C, bias: false },
  ];
}

/** The LM head (embed_out / lm_head, tied or not: the product is the same) or a reward model's score [1, C]. */
export function headLinear(c: ModelConfig): Linear {
  const module = c.head === 'score' ? 'score' : c.modelType === 'gpt_neox' ? 'embed_out' : 'lm_head';
  return { module, in: c.hidden, out: c.head === 'score' ? 1 : c.vocabSize, bias: false };
}

/** PEFT's meaning of the targets: 'all-linear' is every product but the output head. */
function isTarget(lora: LoraWorkload | undefined, module: string): boolean {
  if (!lora) return false;
  if (lora.targets === 'all-linear') return module !== 'embed_out' && module !== 'lm_head' && module !== 'score';
  return lora.targets.includes(module);
}

/** Trainable elements of the adapters: r (in + out) per adapted product. */
export function loraElements(c: ModelConfig, lora: LoraWorkload): number {
  let n = 0;
  for (const l of layerLinears(c)) if (isTarget(lora, l.module)) n += c.layers * lora.r * (l.in + l.out);
  const h = headLinear(c);
  if (isTarget(lora, h.module)) n += lora.r * (h.in + h.out);
  return n;
}

/** Keys visible to the queries at positions [from, to): sum of min(p + 1, window). */
export function visibleKeys(from: number, to: number, window: number | null): number {
  const upTo = (T: number) => {
    // sum over p < T of min(p + 1, W): T (T + 1) / 2 while T <= W, then W per further position.
    if (window === null || T <= window) return (T * (T + 1)) / 2;
    return (window * (window + 1)) / 2 + (T - window) * window;
  };
  return upTo(to) - upTo(from);
}

/**
 * Score entries that a kernel tiled BR query rows x BC keys computes over a causal sequence of T tokens (window
 * W or none): each query tile computes, whole, the key tiles from the one holding the first key its first row
 * sees to the one holding its last row's own position (the diagonal tile, clipped at T).
 */
export function tiledEntries(T: number, tiles: Tiles, window: number | null): number {
  let n = 0;
  for (let t0 = 0; t0 < T; t0 += tiles.BR) {
    const rows = Math.min(tiles.BR, T - t0), last = t0 + rows - 1;
    const firstKey = window === null ? 0 : Math.max(0, t0 + 1 - window);
    n += rows * (Math.min(T, (Math.floor(last / tiles.BC) + 1) * tiles.BC) - Math.floor(firstKey / tiles.BC) * tiles.BC);
  }
  return n;
}

/**
 * FLOPs per head dim of a kernel tiled BR × BC doing perEntry per entry, whose last products (`last` per entry: 2 for
 * the forward's P V and dQ's dS K, 4 for dV and dK) run over (BRV ?? BR) × (BCV ?? BC) tiles where the kernel skips
 * the blocks that see nothing.
 */
export function tiledFlopsPerDim(T: number, tiles: Tiles, window: number | null, perEntry: number, last = 2): number {
  return (perEntry - last) * tiledEntries(T, tiles, window) + last * tiledEntries(T, { BR: tiles.BRV ?? tiles.BR, BC: tiles.BCV ?? tiles.BC }, window);
}

/** The parts of a phase's count, so that tests and reports can show where the FLOPs go (see the file comment). */
export interface FlopBreakdown {
  /** The trunk's products (dX and dW in backward). */
  matmul: number;
  /** Bias adds, and bias gradients. */
  bias: number;
  /** The head's product. */
  head: number;
  /** The adapters (and the merge). */
  lora: number;
  norm: number;
  activation: number;
  rotary: number;
  /** Residual adds, and the sums of the gradients of a tensor read by several ops. */
  residual: number;
  /** The embedding gradient, a tied embedding's second gradient, the reward model's row gather backward. */
  embedding: number;
  /** Token log-probs and the masked sequence sums. */
  logits: number;
  sampler: number;
  /** Gradients of later micro-batches added into the parameters'. */
  accumulate: number;
  optimizer: number;
  /** Useful attention: visible keys only (not in totalOf; usefulOf counts it in place of attentionExecuted). */
  attention: number;
  /** Attention as the tiled kernels execute it (in totalOf). */
  attentionExecuted: number;
}

const PARTS = ['matmul', 'bias', 'head', 'lora', 'norm', 'activation', 'rotary', 'residual', 'embedding', 'logits', 'sampler', 'accumulate', 'optimizer', 'attention', 'attentionExecuted'] as const;

export const zeroBreakdown = (): FlopBreakdown => Object.fromEntries(PARTS.map((k) => [k, 0])) as unknown as FlopBreakdown;

/** The analytic count set beside the ledger: everything, attention as executed. */
export const totalOf = (b: FlopBreakdown) => PARTS.reduce((n, k) => (k === 'attention' ? n : n + b[k]), 0);

/** The useful FLOPs, for MFU: everything, attention over the visible keys only. */
export const usefulOf = (b: FlopBreakdown) => totalOf(b) - b.attentionExecuted + b.attention;

/** a += k · b, part by part. */
export function addBreakdown(a: FlopBreakdown, b: Partial<FlopBreakdown>, k = 1): FlopBreakdown {
  for (const p of PARTS) a[p] += k * (b[p] ?? 0);
  return a;
}

const isNeox = (c: ModelConfig) => c.modelType === 'gpt_neox';
const normFlops = (c: ModelConfig) => (isNeox(c) ? { forward: LAYER_NORM_FORWARD_FLOPS, backward: LAYER_NORM_BACKWARD_FLOPS } : { forward: RMS_NORM_FORWARD_FLOPS, backward: RMS_NORM_BACKWARD_FLOPS });
const activationFlops = (c: ModelConfig) => (isNeox(c) ? { forward: GELU_FORWARD_FLOPS, backward: GELU_BACKWARD_FLOPS } : { forward: SWIGLU_FORWARD_FLOPS, backward: SWIGLU_BACKWARD_FLOPS });
/** Rotated pairs per token: q's and k's (GPT-NeoX rotates rotaryDims of each head, Mistral whole heads). */
function rotaryPairs(c: ModelConfig): { q: number; k: number } {
  const half = (isNeox(c) ? c.rotaryDims : c.headDim) / 2;
  return { q: c.heads * half, k: c.kvHeads * half };
}
const windowOf = (c: ModelConfig) => (c.slidingWindow !== null && c.slidingWindow > 0 ? c.slidingWindow : null);

/** An adapter's forward per token (see the file comment). */
function adapterForward(l: Linear, lora: LoraWorkload, training: boolean): number {
  const dropout = training && (lora.dropout ?? 0) > 0 ? DROPOUT_FLOPS * l.in : 0;
  return dropout + 2 * lora.r * l.in + lora.r + 2 * lora.r * l.out + ADD_FLOPS * l.out;
}

/** An adapter's backward per token; needX: its input needs a gradient. The sum into the base dX is counted with the input's gradient sums. */
function adapterBackward(l: Linear, lora: LoraWorkload, needX: boolean): number {
  const throughA = needX ? 2 * lora.r * l.in + ((lora.dropout ?? 0) > 0 ? DROPOUT_FLOPS * l.in : 0) : 0;
  return 4 * lora.r * l.out + lora.r + 2 * lora.r * l.in + throughA;
}

/** The forward of `tokens` tokens through the trunk (layers and the final norm), per the file comment. */
function trunkForward(c: ModelConfig, tokens: number, lora: LoraWorkload | undefined, training: boolean, finalNorm = true): FlopBreakdown {
  const b = zeroBreakdown(), L = c.layers;
  for (const l of layerLinears(c)) {
    b.matmul += L * tokens * 2 * l.in * l.out;
    if (l.bias) b.bias += L * tokens * ADD_FLOPS * l.out;
    if (isTarget(lora, l.module)) b.lora += L * tokens * adapterForward(l, lora!, training);
  }
  // A parallel-residual layer's two norms of one x are one pair kernel (engine/ops/norms.ts layerNormPair).
  const layerNorms = isNeox(c) && c.parallelResidual ? LAYER_NORM_PAIR_FORWARD_FLOPS : 2 * normFlops(c).forward;
  b.norm = (L * layerNorms + (finalNorm ? normFlops(c).forward : 0)) * tokens * c.hidden;
  b.activation = L * tokens * c.intermediate * activationFlops(c).forward;
  const pairs = rotaryPairs(c);
  b.rotary = L * tokens * ROTARY_FLOPS_PER_PAIR * (pairs.q + pairs.k);
  b.residual = L * tokens * 2 * ADD_FLOPS * c.hidden;
  return b;
}

/** The head's product at `tokens` positions, with its adapter when it is a target. */
function headForward(c: ModelConfig, tokens: number, lora: LoraWorkload | undefined, training: boolean): Partial<FlopBreakdown> {
  const h = headLinear(c);
  return { head: tokens * 2 * h.in * h.out, lora: isTarget(lora, h.module) ? tokens * adapterForward(h, lora!, training) : 0 };
}

/** Attention over a causal sequence of T tokens: useful (visible keys) and executed (the forward kernel's tiles). */
function attentionForward(c: ModelConfig, T: number, plan: AttentionPlan | undefined): Partial<FlopBreakdown> {
  const perEntry = c.layers * ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM * c.heads * c.headDim, W = windowOf(c), visible = visibleKeys(0, T, W);
  const executed = plan ? tiledFlopsPerDim(T, plan.forward, W, ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM) : ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM * visible;
  return { attention: perEntry * visible, attentionExecuted: (perEntry / ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM) * executed };
}

/** Positions of a sequence of T tokens whose logits predict a token, and positions summed under the mask. */
function readoutPositions(g: SequenceGroup, head: HeadPositions): { predicting: number; summed: number; headTokens: number } {
  const T = g.promptLength + g.responseLength;
  const headTokens = Math.min(head === 'all' ? T : head === 'response' ? g.responseLength : 1, T);
  return head === 'all' ? { predicting: Math.max(0, T - 1), summed: T, headTokens } : { predicting: headTokens, summed: headTokens, headTokens };
}

function readoutOf(c: ModelConfig, w: ForwardWorkload): 'logprobs' | 'none' {
  return w.readout ?? (c.head === 'score' ? 'none' : 'logprobs');
}

function checkGroups(groups: readonly { count: number }[], fields: string[]): void {
  for (const g of groups) {
    for (const f of ['count', ...fields]) {
      const v = (g as unknown as Record<string, number>)[f];
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`audit_model: ${f} must be a non-negative integer, got ${v}`);
    }
  }
}

export function forwardBreakdown(config: ModelConfig, w: ForwardWorkload): FlopBreakdown {
  const c = w.model ?? config, training = w.training ?? false, V = headLinear(c).out;
  checkGroups(w.sequences, ['promptLength', 'responseLength']);
  const b = zeroBreakdown();
  for (const g of w.sequences) {
    const T = g.promptLength + g.responseLength, r = readoutPositions(g, w.head);
    addBreakdown(b, trunkForward(c, T, w.lora, training), g.count);
    addBreakdown(b, headForward(c, r.headTokens, w.lora, training), g.count);
    addBreakdown(b, attentionForward(c, T, w.attentionPlan), g.count);
    if (readoutOf(c, w) === 'logprobs') b.logits += g.count * (TOKEN_LOGPROBS_FORWARD_FLOPS * V * r.predicting + SEQUENCE_SUM_FORWARD_FLOPS * r.summed);
  }
  return b;
}

/**
 * Gradient checkpointing's replay in a backward (engine/autodiff.ts checkpoint, one per layer): every layer's
 * training forward again (dropout included), without the embedding, the final norm or the head.
 */
export function recomputeBreakdown(config: ModelConfig, w: ForwardWorkload): FlopBreakdown {
  const c = w.model ?? config;
  checkGroups(w.sequences, ['promptLength', 'responseLength']);
  const b = zeroBreakdown();
  for (const g of w.sequences) {
    const T = g.promptLength + g.responseLength;
    addBreakdown(b, trunkForward(c, T, w.lora, true, false), g.count);
    addBreakdown(b, attentionForward(c, T, w.attentionPlan), g.count);
  }
  return b;
}

/** One layer's backward per token, and which of q, k, v need gradients; needIn: the layer's input needs one. */
interface LayerBackward { perToken: FlopBreakdown; q: boolean; kv: boolean; needOut: boolean }

function layerBackward(c: ModelConfig, lora: LoraWorkload | undefined, needIn: boolean): LayerBackward {
  const full = lora === undefined, p = zeroBreakdown();
  const adapted = (l: Linear) => isTarget(lora, l.module);
  /** A product's output needs a gradient when its input does, its weight trains or it has an adapter. */
  const needs = (needX: boolean, l: Linear) => needX || full || adapted(l);
  const product = (l: Linear, needX: boolean) => {
    if (!needs(needX, l)) return;
    if (needX) p.matmul += 2 * l.in * l.out; // dX
    if (full) { p.matmul += 2 * l.in * l.out; if (l.bias) p.bias += ADD_FLOPS * l.out; } // dW, the bias gradient
    if (adapted(l)) p.lora += adapterBackward(l, lora!, needX);
  };
  /** Gradients a product sends to its input: the base's dX and its adapter's. */
  const sends = (l: Linear, needX: boolean) => (needX ? 1 + (adapted(l) ? 1 : 0) : 0);
  const sums = (width: number, gradients: number) => { p.residual += Math.max(0, gradients - 1) * ADD_FLOPS * width; };
  const C = c.hidden, I = c.intermediate, attnWidth = c.heads * c.headDim, norm = normFlops(c).backward, pairs = rotaryPairs(c);
  const lin = layerLinears(c);
  if (isNeox(c)) {
    const [qkv, dense, up, down] = lin;
    const nQkv = needs(needIn, qkv);
    product(qkv, needIn);
    if (nQkv) p.rotary += ROTARY_FLOPS_PER_PAIR * (pairs.q + pairs.k);
    product(dense, nQkv);
    const nDense = needs(nQkv, dense);
    const nMlpIn = c.parallelResidual ? needIn : needIn || nDense; // ln2 reads x (parallel) or h = x + attention
    product(up, nMlpIn);
    const nUp = needs(nMlpIn, up);
    if (nUp) p.activation += I * activationFlops(c).backward;
    product(down, nUp);
    if (needIn) p.norm += C * norm;
    if (nMlpIn) p.norm += C * norm;
    sums(C, sends(qkv, needIn));
    sums(attnWidth, sends(dense, nQkv));
    sums(C, sends(up, nMlpIn));
    sums(I, sends(down, nUp));
    if (c.parallelResidual) sums(C, needIn ? 3 : 0); // x: ln1, ln2, the residual
    else { sums(C, needIn ? 2 : 0); sums(C, nMlpIn ? 2 : 0); } // x: ln1, the residual; h: ln2, the residual
    return { perToken: p, q: nQkv, kv: nQkv, needOut: needIn || nDense || needs(nUp, down) };
  }
  const [q, k, v, o, gate, up, down] = lin;
  const nq = needs(needIn, q), nk = needs(needIn, k), nv = needs(needIn, v);
  for (const l of [q, k, v]) product(l, needIn);
  if (nq) p.rotary += ROTARY_FLOPS_PER_PAIR * pairs.q;
  if (nk) p.rotary += ROTARY_FLOPS_PER_PAIR * pairs.k;
  const nAttn = nq || nk || nv;
  product(o, nAttn);
  const nH = needIn || needs(nAttn, o); // h = x + attention
  product(gate, nH);
  product(up, nH);
  const nAct = needs(nH, gate) || needs(nH, up); // one kernel writes dgate and dup
  if (nAct) p.activation += I * activationFlops(c).backward;
  product(down, nAct);
  if (needIn) p.norm += C * norm;
  if (nH) p.norm += C * norm;
  sums(C, sends(q, needIn) + sends(k, needIn) + sends(v, needIn));
  sums(attnWidth, sends(o, nAttn));
  sums(C, sends(gate, nH) + sends(up, nH));
  sums(I, sends(down, nAct));
  sums(C, needIn ? 2 : 0); // x: the norm, the residual
  sums(C, nH ? 2 : 0); // h: the norm, the residual
  return { perToken: p, q: nq, kv: nk || nv, needOut: nH || needs(nAct, down) };
}

/** The backward of forwardBreakdown(config, w): see the file comment. */
export function backwardBreakdown(config: ModelConfig, w: ForwardWorkload): FlopBreakdown {
  const c = w.model ?? config, full = w.lora === undefined, h = headLinear(c), V = h.out, W = windowOf(c);
  checkGroups(w.sequences, ['promptLength', 'responseLength']);
  // Layer 0 reads the embedding, which trains only under full fine-tuning; the layers after it are alike.
  const first = layerBackward(c, w.lora, full);
  const rest = layerBackward(c, w.lora, full || first.needOut);
  const layers = c.layers === 0 ? [] : [first, ...Array.from({ length: c.layers - 1 }, () => rest)];
  const needTrunk = c.layers === 0 ? full : layers[layers.length - 1].needOut;
  const headLora = isTarget(w.lora, h.module);
  const plan = w.attentionPlan, perDim = c.heads * c.headDim, usefulFactor = w.attentionBackwardFactor ?? FLASH_ATTENTION_2_BACKWARD_FACTOR;
  const b = zeroBreakdown();
  for (const g of w.sequences) {
    const T = g.promptLength + g.responseLength, r = readoutPositions(g, w.head), n = g.count;
    for (const l of layers) {
      addBreakdown(b, l.perToken, n * T);
      if (!l.q && !l.kv) continue;
      const visible = visibleKeys(0, T, W);
      b.attention += n * usefulFactor * ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM * perDim * visible;
      b.attentionExecuted += n * perDim * (ATTENTION_DELTA_FLOPS * T
        + (l.kv ? (plan ? tiledFlopsPerDim(T, plan.dkdv, W, ATTENTION_DKDV_FLOPS_PER_ENTRY_DIM, 4) : ATTENTION_DKDV_FLOPS_PER_ENTRY_DIM * visible) : 0)
        + (l.q ? (plan ? tiledFlopsPerDim(T, plan.dq, W, ATTENTION_DQ_FLOPS_PER_ENTRY_DIM) : ATTENTION_DQ_FLOPS_PER_ENTRY_DIM * visible) : 0));
    }
    if (needTrunk) b.norm += n * T * c.hidden * normFlops(c).backward; // the final norm
    // The head: dX where the trunk needs it, dW when it trains, its adapter. The fused head (no adapter, an LM's
    // log-probs: engine/ops/lm_head.ts) in more than one chunk first recomputes its logits, and sums the chunks'
    // dX: (chunks - 1) adds each.
    const chunked = readoutOf(c, w) === 'logprobs' && !headLora && (w.headChunks ?? 1) > 1;
    b.head += n * r.headTokens * 2 * h.in * h.out * ((needTrunk ? 1 : 0) + (full ? 1 : 0) + (chunked ? 1 : 0));
    if (chunked && needTrunk) b.head += n * r.headTokens * ADD_FLOPS * h.in * (w.headChunks! - 1);
    if (headLora) b.lora += n * r.headTokens * adapterBackward(h, w.lora!, needTrunk);
    if (headLora && needTrunk) b.residual += n * r.headTokens * ADD_FLOPS * h.in; // the head's input: base and adapter dX
    if (w.head === 'last' && needTrunk) b.embedding += n * EMBEDDING_BACKWARD_FLOPS * c.hidden; // the row gather's backward
    if (readoutOf(c, w) === 'logprobs') b.logits += n * (TOKEN_LOGPROBS_BACKWARD_FLOPS * V * r.headTokens + SEQUENCE_SUM_BACKWARD_FLOPS * r.summed);
    if (full) b.embedding += n * T * EMBEDDING_BACKWARD_FLOPS * c.hidden;
  }
  if (full && c.tieWordEmbeddings) b.embedding += (w.passes ?? 0) * ACCUMULATE_FLOPS * h.in * h.out; // the head's dW added into the embedding's
  b.accumulate = ACCUMULATE_FLOPS * (w.accumulatedElements ?? 0);
  return b;
}

/** Sampler FLOPs per logit of a sampled row (kernels/sample_tokens.ts's passes). */
export function samplerFlopsPerLogit(s: Sampling, V: number): number {
  if (s.temperature === 0) return SAMPLER_COUNTING_PASS_FLOPS;
  const topK = s.topK > 0 && s.topK < V, topP = s.topP < 1;
  const counting = 1 + (topP ? 1 : 0), weighted = 1 + (topK ? SAMPLER_BISECTION_PASSES : 0) + (topP ? 1 + SAMPLER_BISECTION_PASSES : 0);
  return SAMPLER_COUNTING_PASS_FLOPS * counting + SAMPLER_WEIGHTED_PASS_FLOPS * weighted;
}

const GREEDY: Sampling = { temperature: 0, topK: 0, topP: 1 };

export function generationBreakdown(config: ModelConfig, w: GenerationWorkload): FlopBreakdown {
  const c = w.model ?? config, V = headLinear(c).out, W = windowOf(c), plan = w.attentionPlan;
  checkGroups(w.passes, ['tokens', 'filled']);
  const perEntry = c.layers * ATTENTION_FORWARD_FLOPS_PER_ENTRY_DIM * c.heads * c.headDim;
  const perLogit = samplerFlopsPerLogit(w.sampling ?? GREEDY, V);
  const b = zeroBreakdown();
  for (const { count: n, tokens, filled } of w.passes) {
    // Every position through the trunk, the head on the last, and a token drawn a row.
    addBreakdown(b, trunkForward(c, tokens, w.lora, false), n);
    addBreakdown(b, headForward(c, 1, w.lora, false), n);
    b.sampler += n * V * perLogit;
    if (filled === 0) { // a prompt pass: the tiled kernel over the prompt
      addBreakdown(b, attentionForward(c, tokens, plan), n);
      continue;
    }
    if (tokens !== 1) throw new Error(`audit_model: a decode pass takes one token a row, got ${tokens} after ${filled} cached`);
    // A decode step's query at position `filled` sees the keys up to itself (padding columns included, as the kernel computes them).
    const keys = visibleKeys(filled, filled + 1, W);
    b.attention += n * perEntry * keys;
    b.attentionExecuted += n * perEntry * keys;
    if (plan) {
      // The query row merges the chunks of decodeChunk keys its filled + 1 columns make, or normalises its one chunk.
      const chunks = Math.ceil((filled + 1) / plan.decodeChunk);
      b.attentionExecuted += n * c.layers * c.heads * c.headDim * (chunks === 1 ? DECODE_NORMALIZE_FLOPS : DECODE_MERGE_FLOPS * chunks);
    }
  }
  return b;
}

/** W += s B A per adapted product: B A is 2 r in out, then the scale and the add, 2 in out. */
export function mergeFlops(config: ModelConfig, w: MergeWorkload): number {
  const c = w.model ?? config;
  let n = 0;
  const merged = (l: Linear) => (2 * w.lora.r + 2) * l.in * l.out;
  for (const l of layerLinears(c)) if (isTarget(w.lora, l.module)) n += c.layers * merged(l);
  const h = headLinear(c);
  if (isTarget(w.lora, h.module)) n += merged(h);
  return n;
}

export function optimizerFlops(w: OptimizerWorkload): number {
  return w.trainableElements * ((w.flopsPerElement ?? ADAMW_FLOPS_PER_ELEMENT) + (w.gradNorm === false ? 0 : GRAD_NORM_FLOPS_PER_ELEMENT));
}

export function phaseBreakdown<P extends Phase>(config: ModelConfig, phase: P, workload: PhaseWorkloads[P]): FlopBreakdown {
  switch (phase) {
    case 'generation': return generationBreakdown(config, workload as GenerationWorkload);
    case 'reference': case 'policy-forward': case 'reward-forward': return forwardBreakdown(config, workload as ForwardWorkload);
    case 'policy-backward': case 'reward-backward': return backwardBreakdown(config, workload as ForwardWorkload);
    case 'policy-backward-recompute': case 'reward-backward-recompute': return recomputeBreakdown(config, workload as ForwardWorkload);
    case 'optimizer': return { ...zeroBreakdown(), optimizer: optimizerFlops(workload as OptimizerWorkload) };
    case 'merge': return { ...zeroBreakdown(), lora: mergeFlops(config, workload as MergeWorkload) };
    case 'evaluation': return 'sequences' in workload ? forwardBreakdown(config, workload as ForwardWorkload) : generationBreakdown(config, workload as GenerationWorkload);
  }
  throw new Error(`audit_model: unknown phase '${phase}'; phases: ${PHASES.join(', ')}`);
}

/** The analytic FLOPs of one phase (attention as executed: what the ledger is compared with). */
export function phaseFlops<P extends Phase>(config: ModelConfig, phase: P, workload: PhaseWorkloads[P]): number {
  return totalOf(phaseBreakdown(config, phase, workload));
}

/** Every phase's analytic FLOPs; 0 for a phase without a workload. */
export function runAnalyticFlops(config: ModelConfig, workloads: Partial<PhaseWorkloads>): Record<Phase, number> {
  const out = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;
  for (const p of PHASES) {
    const w = workloads[p];
    if (w !== undefined) out[p] = phaseFlops(config, p, w as never);
  }
  return out;
}

// ---- the report ----

export interface AuditRow {
  phase: string;
  ledgerFlops: number;
  /** Bytes read and written, from the ledger. */
  bytes: number;
  /** The analytic model's count, attention as executed: ledger / analytic is the 2% check. */
  analyticFlops: number;
  /** The analytic count with attention over the visible keys only: what MFU is computed on. */
  usefulFlops: number;
  /** Measured GPU time; null when the phase was not timed. */
  gpuMs: number | null;
}

/**
 * Rows from the ledger's byPhase() and the analytic counts (and the useful ones; the analytic ones where absent):
 * every phase either names, analytic phases first in PHASES' order.
 */
export function auditRows(byPhase: readonly LedgerRow[], analytic: Partial<Record<string, number>>, useful: Partial<Record<string, number>> = analytic): AuditRow[] {
  const ledgerOf = new Map(byPhase.map((r) => [r.key, r]));
  const names = [...PHASES.filter((p) => ledgerOf.has(p) || (analytic[p] ?? 0) > 0), ...byPhase.map((r) => r.key).filter((k) => !(PHASES as readonly string[]).includes(k))];
  return names.map((phase) => {
    const r = ledgerOf.get(phase);
    return {
      phase,
      ledgerFlops: r?.flops ?? 0,
      bytes: r ? r.bytesRead + r.bytesWritten : 0,
      analyticFlops: analytic[phase] ?? 0,
      usefulFlops: useful[phase] ?? analytic[phase] ?? 0,
      gpuMs: r && r.timed > 0 ? r.ns / 1e6 : null,
    };
  });
}

/** ledger / analytic; null without an analytic count. */
export function ratioOf(row: AuditRow): number | null {
  return row.analyticFlops > 0 ? row.ledgerFlops / row.analyticFlops : null;
}

/** Model FLOPs utilisation: the useful FLOPs (masked attention entries left out) over the time, against the peak; null when untimed. */
export function mfuOf(row: AuditRow, peakTflops: number): number | null {
  if (row.gpuMs === null || row.gpuMs <= 0 || !(peakTflops > 0)) return null;
  return row.usefulFlops / (row.gpuMs / 1e3) / (peakTflops * 1e12);
}

function totalRow(rows: readonly AuditRow[]): AuditRow {
  const timed = rows.filter((r) => r.gpuMs !== null);
  return {
    phase: 'total',
    ledgerFlops: rows.reduce((s, r) => s + r.ledgerFlops, 0),
    bytes: rows.reduce((s, r) => s + r.bytes, 0),
    analyticFlops: rows.reduce((s, r) => s + r.analyticFlops, 0),
    usefulFlops: rows.reduce((s, r) => s + r.usefulFlops, 0),
    gpuMs: timed.length === 0 ? null : timed.reduce((s, r) => s + r.gpuMs!, 0),
  };
}

/** A peak for a column's head, in three figures: TF from 1 TFLOP/s up, GF below (lavapipe's peak is a few dozen GFLOP/s). */
export function peakLabel(peakTflops: number): string {
  return peakTflops >= 1 ? `${Number(peakTflops.toPrecision(3))}TF` : `${Number((peakTflops * 1e3).toPrecision(3))}GF`;
}

/**
 * A plain-text table: per phase and in total, ledger GFLOP, MB, analytic GFLOP (attention as executed), ratio
 * (ledger / analytic), useful GFLOP (attention over visible keys), GPU ms (or —), MFU on the useful FLOPs (or —).
 */
export function auditTable(rows: readonly AuditRow[], opts: { peakTflops: number }): string {
  const dash = '—';
  const width = Math.max(16, ...rows.map((r) => r.phase.length)); // e.g. policy-backward-recompute (--gradient-checkpointing)
  const head = ['phase'.padEnd(width), 'ledger GFLOP'.padStart(13), 'MB'.padStart(11), 'analytic GFLOP'.padStart(15), 'ratio'.padStart(7), 'useful GFLOP'.padStart(13), 'GPU ms'.padStart(10), (opts.peakTflops > 0 ? `MFU@${peakLabel(opts.peakTflops)}` : 'MFU').padStart(11)];
  const lines = [head.join(' ')];
  const total = totalRow(rows);
  // The total's MFU counts the timed phases only: an untimed phase's FLOPs took no measured time.
  const timedTotal = totalRow(rows.filter((r) => r.gpuMs !== null));
  for (const r of [...rows, total]) {
    const ratio = ratioOf(r), mfu = mfuOf(r === total ? timedTotal : r, opts.peakTflops);
    lines.push([
      r.phase.padEnd(width),
      (r.ledgerFlops / 1e9).toFixed(6).padStart(13),
      (r.bytes / 1e6).toFixed(3).padStart(11),
      (r.analyticFlops / 1e9).toFixed(6).padStart(15),
      (ratio === null ? dash : ratio.toFixed(3)).padStart(7),
      (r.usefulFlops / 1e9).toFixed(6).padStart(13),
      (r.gpuMs === null ? dash : r.gpuMs.toFixed(3)).padStart(10),
      (mfu === null ? dash : `${(100 * mfu).toFixed(2)}%`).padStart(11),
    ].join(' '));
  }
  return lines.join('\n');
}

export interface AuditJsonRow { ledger_flops: number; analytic_flops: number; ratio: number | null; useful_flops: number; bytes: number; gpu_ms: number | null }

export function auditJson(rows: readonly AuditRow[]): Record<string, AuditJsonRow> {
  return Object.fromEntries(rows.map((r) => [r.phase, { ledger_flops: r.ledgerFlops, analytic_flops: r.analyticFlops, ratio: ratioOf(r), useful_flops: r.usefulFlops, bytes: r.bytes, gpu_ms: r.gpuMs }]));
}
