// The analytic FLOP model of each phase of a reward-learning run, in one place: what the arithmetic of the
// model needs, to set beside what the ledger counted (engine/ledger.ts) and what the GPU took.
//
// Forward of a causal LM, per token: 2 N_matmul, N_matmul the weights of the matrix products (GPT-NeoX:
// query_key_value, dense, dense_h_to_4h, dense_4h_to_h; Mistral: q/k/v/o_proj, gate/up/down_proj), plus the
// head (C x V; a reward model's score C x 1) at the tokens where it is applied; the embedding lookup is no
// product. Bias adds are counted as the ledger counts a matmul with bias (2 M N K + M N): one flop per output
// of a biased product (GPT-NeoX: every product but the head). Attention, per layer and query: QKᵀ and PV,
// 4 H D per visible key (H query heads of D dims; grouped K/V heads change the k/v widths, not this), with
// min(position + 1, window) keys visible; a sequence of T tokens sums that over its positions.
// Not counted: norms, activations, rotary, softmax, cross-entropy, embedding gradients: ratio = ledger /
// analytic above 1 measures those and any waste (a head applied where no logit is read).
//
// Backward, full fine-tuning: every product computes dX and dW, twice its forward; each bias its gradient
// (one add per output). Attention backward is ATTENTION_BACKWARD_FACTOR times the forward's attention.
// LoRA (frozen base): a base product computes dX only, once its forward, and no bias gradient; an adapter
// costs forward x Aᵀ (2 r in), then Bᵀ (2 r out), the scale and the add (2 out) per token, and backward
// dU = s dY (out), dB and dH (2 r out each), dA and dX (2 r in each), and the add into the base dX (in).
// The head is a product like the others: frozen under LoRA unless it is a target.
//
// Generation: a prompt pass over each prompt with the head on the last position only, then one decode step
// per further new token (the last new token is never fed back: models/causal_lm.ts), the head applied,
// attending over the cache.
import type { ModelConfig } from '../models/config.ts';
import type { LoraTargets } from '../models/lora.ts';
import type { LedgerRow } from '../engine/ledger.ts';

export const PHASES = ['generation', 'reference', 'policy-forward', 'policy-backward', 'reward-forward', 'reward-backward', 'optimizer', 'merge'] as const;
export type Phase = (typeof PHASES)[number];

/**
 * Attention backward over attention forward FLOPs. The engine's two kernels recompute S = QKᵀ and dP = dO Vᵀ
 * in each: dK/dV does S, dP, dV, dK (8 D per entry), dQ does S, dP, dQ (6 D), against the forward's 4 D:
 * 14 / 4. FlashAttention-2's single pass needs five products, FLASH_ATTENTION_2_BACKWARD_FACTOR.
 */
export const ATTENTION_BACKWARD_FACTOR = 3.5;
export const FLASH_ATTENTION_2_BACKWARD_FACTOR = 2.5;
/** kernels/adamw.ts's count per trainable element. */
export const ADAMW_FLOPS_PER_ELEMENT = 14;

/** Sequences of one shape: `count` of them, each a prompt and a response (the response's EOS included). */
export interface SequenceGroup { count: number; promptLength: number; responseLength: number }

/** Where the head is applied: every position; the positions whose logits predict a response token (responseLength of them); the last. */
export type HeadPositions = 'all' | 'response' | 'last';

export interface LoraWorkload { r: number; targets: LoraTargets }

/** A forward (or the backward of that forward) over whole sequences. */
export interface ForwardWorkload {
  sequences: readonly SequenceGroup[];
  head: HeadPositions;
  /** Adapters on a frozen base; absent: every weight trained. */
  lora?: LoraWorkload;
  /** The model of this phase when it is not the run's (a reward model, a reference of another size). */
  model?: ModelConfig;
  /** Overrides ATTENTION_BACKWARD_FACTOR (backward phases only). */
  attentionBackwardFactor?: number;
}

export interface GenerationGroup { count: number; promptLength: number; newTokens: number }
export interface GenerationWorkload { sequences: readonly GenerationGroup[]; lora?: LoraWorkload; model?: ModelConfig }

/** RMSprop or another optimizer: pass its flops per element (AdamW's 14 by default). */
export interface OptimizerWorkload { trainableElements: number; flopsPerElement?: number }

export interface MergeWorkload { lora: LoraWorkload; model?: ModelConfig }

export interface PhaseWorkloads {
  generation: GenerationWorkload;
  reference: ForwardWorkload;
  'policy-forward': ForwardWorkload;
  'policy-backward': ForwardWorkload;
  'reward-forward': ForwardWorkload;
  'reward-backward': ForwardWorkload;
  optimizer: OptimizerWorkload;
  merge: MergeWorkload;
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

/** The parts of a phase's count, so that tests and reports can show where the FLOPs go. */
export interface FlopBreakdown { matmul: number; bias: number; head: number; attention: number; lora: number }

const zero = (): FlopBreakdown => ({ matmul: 0, bias: 0, head: 0, attention: 0, lora: 0 });
export const totalOf = (b: FlopBreakdown) => b.matmul + b.bias + b.head + b.attention + b.lora;

/** Forward FLOPs of `tokens` tokens through the trunk, `headTokens` of them through the head, `keys` visible query-key pairs per layer. */
function forwardParts(c: ModelConfig, tokens: number, headTokens: number, keys: number, lora?: LoraWorkload): FlopBreakdown {
  const b = zero();
  for (const l of layerLinears(c)) {
    b.matmul += c.layers * tokens * 2 * l.in * l.out;
    if (l.bias) b.bias += c.layers * tokens * l.out;
    if (isTarget(lora, l.module)) b.lora += c.layers * tokens * (2 * lora!.r * (l.in + l.out) + 2 * l.out);
  }
  const h = headLinear(c);
  b.head = headTokens * 2 * h.in * h.out;
  if (isTarget(lora, h.module)) b.lora += headTokens * (2 * lora!.r * (h.in + h.out) + 2 * h.out);
  b.attention = c.layers * 4 * c.heads * c.headDim * keys;
  return b;
}

function headTokensOf(g: SequenceGroup, head: HeadPositions): number {
  return head === 'all' ? g.promptLength + g.responseLength : head === 'response' ? g.responseLength : 1;
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
  const c = w.model ?? config;
  checkGroups(w.sequences, ['promptLength', 'responseLength']);
  const b = zero();
  for (const g of w.sequences) {
    const T = g.promptLength + g.responseLength;
    const part = forwardParts(c, T, Math.min(headTokensOf(g, w.head), T), visibleKeys(0, T, c.slidingWindow), w.lora);
    for (const k of Object.keys(b) as (keyof FlopBreakdown)[]) b[k] += g.count * part[k];
  }
  return b;
}

/** The backward of forwardBreakdown(config, w): see the file comment. */
export function backwardBreakdown(config: ModelConfig, w: ForwardWorkload): FlopBreakdown {
  const c = w.model ?? config;
  const f = forwardBreakdown(config, w);
  const factor = w.attentionBackwardFactor ?? ATTENTION_BACKWARD_FACTOR;
  const b: FlopBreakdown = { ...zero(), attention: factor * f.attention };
  if (!w.lora) {
    b.matmul = 2 * f.matmul;
    b.head = 2 * f.head;
    b.bias = f.bias; // the bias gradient: one add per output, as many as the forward's bias adds
    return b;
  }
  b.matmul = f.matmul; // dX only
  b.head = f.head;
  const lora = w.lora;
  for (const g of w.sequences) {
    const T = g.promptLength + g.responseLength, H = Math.min(headTokensOf(g, w.head), T);
    const adapterBackward = (l: Linear) => 4 * lora.r * (l.in + l.out) + l.out + l.in;
    for (const l of layerLinears(c)) if (isTarget(lora, l.module)) b.lora += g.count * c.layers * T * adapterBackward(l);
    const h = headLinear(c);
    if (isTarget(lora, h.module)) b.lora += g.count * H * adapterBackward(h); // the head's own weight stays frozen: dX only, above
  }
  return b;
}

export function generationBreakdown(config: ModelConfig, w: GenerationWorkload): FlopBreakdown {
  const c = w.model ?? config;
  checkGroups(w.sequences, ['promptLength', 'newTokens']);
  const b = zero();
  for (const g of w.sequences) {
    if (g.newTokens === 0) continue;
    const P = g.promptLength, steps = g.newTokens - 1;
    const prompt = forwardParts(c, P, 1, visibleKeys(0, P, c.slidingWindow), w.lora);
    // Decode steps feed the new tokens at positions P .. P + steps - 1, each with the head.
    const decode = forwardParts(c, steps, steps, visibleKeys(P, P + steps, c.slidingWindow), w.lora);
    for (const k of Object.keys(b) as (keyof FlopBreakdown)[]) b[k] += g.count * (prompt[k] + decode[k]);
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

export function phaseBreakdown<P extends Phase>(config: ModelConfig, phase: P, workload: PhaseWorkloads[P]): FlopBreakdown {
  switch (phase) {
    case 'generation': return generationBreakdown(config, workload as GenerationWorkload);
    case 'reference': case 'policy-forward': case 'reward-forward': return forwardBreakdown(config, workload as ForwardWorkload);
    case 'policy-backward': case 'reward-backward': return backwardBreakdown(config, workload as ForwardWorkload);
    case 'optimizer': {
      const o = workload as OptimizerWorkload;
      return { ...zero(), matmul: o.trainableElements * (o.flopsPerElement ?? ADAMW_FLOPS_PER_ELEMENT) };
    }
    case 'merge': return { ...zero(), lora: mergeFlops(config, workload as MergeWorkload) };
  }
  throw new Error(`audit_model: unknown phase '${phase}'; phases: ${PHASES.join(', ')}`);
}

/** The analytic FLOPs of one phase. */
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
  analyticFlops: number;
  /** Measured GPU time; null when the phase was not timed. */
  gpuMs: number | null;
}

/** Rows from the ledger's byPhase() and the analytic counts: every phase either names, analytic phases first in PHASES' order. */
export function auditRows(byPhase: readonly LedgerRow[], analytic: Partial<Record<string, number>>): AuditRow[] {
  const ledgerOf = new Map(byPhase.map((r) => [r.key, r]));
  const names = [...PHASES.filter((p) => ledgerOf.has(p) || (analytic[p] ?? 0) > 0), ...byPhase.map((r) => r.key).filter((k) => !(PHASES as readonly string[]).includes(k))];
  return names.map((phase) => {
    const r = ledgerOf.get(phase);
    return {
      phase,
      ledgerFlops: r?.flops ?? 0,
      bytes: r ? r.bytesRead + r.bytesWritten : 0,
      analyticFlops: analytic[phase] ?? 0,
      gpuMs: r && r.timed > 0 ? r.ns / 1e6 : null,
    };
  });
}

/** ledger / analytic; null without an analytic count. */
export function ratioOf(row: AuditRow): number | null {
  return row.analyticFlops > 0 ? row.ledgerFlops / row.analyticFlops : null;
}

/** Model FLOPs utilisation: analytic FLOPs over the time, against the peak; null when untimed. */
export function mfuOf(row: AuditRow, peakTflops: number): number | null {
  if (row.gpuMs === null || row.gpuMs <= 0 || !(peakTflops > 0)) return null;
  return row.analyticFlops / (row.gpuMs / 1e3) / (peakTflops * 1e12);
}

function totalRow(rows: readonly AuditRow[]): AuditRow {
  const timed = rows.filter((r) => r.gpuMs !== null);
  return {
    phase: 'total',
    ledgerFlops: rows.reduce((s, r) => s + r.ledgerFlops, 0),
    bytes: rows.reduce((s, r) => s + r.bytes, 0),
    analyticFlops: rows.reduce((s, r) => s + r.analyticFlops, 0),
    gpuMs: timed.length === 0 ? null : timed.reduce((s, r) => s + r.gpuMs!, 0),
  };
}

/** A plain-text table: per phase and in total, ledger GFLOP, MB, analytic GFLOP, ratio, GPU ms (or —), MFU (or —). */
export function auditTable(rows: readonly AuditRow[], opts: { peakTflops: number }): string {
  const dash = '—';
  const head = ['phase'.padEnd(16), 'ledger GFLOP'.padStart(13), 'MB'.padStart(11), 'analytic GFLOP'.padStart(15), 'ratio'.padStart(7), 'GPU ms'.padStart(10), `MFU@${opts.peakTflops}TF`.padStart(11)];
  const lines = [head.join(' ')];
  const total = totalRow(rows);
  // The total's MFU counts the timed phases only: an untimed phase's FLOPs took no measured time.
  const timedTotal = totalRow(rows.filter((r) => r.gpuMs !== null));
  for (const r of [...rows, total]) {
    const ratio = ratioOf(r), mfu = mfuOf(r === total ? timedTotal : r, opts.peakTflops);
    lines.push([
      r.phase.padEnd(16),
      (r.ledgerFlops / 1e9).toFixed(6).padStart(13),
      (r.bytes / 1e6).toFixed(3).padStart(11),
      (r.analyticFlops / 1e9).toFixed(6).padStart(15),
      (ratio === null ? dash : ratio.toFixed(3)).padStart(7),
      (r.gpuMs === null ? dash : r.gpuMs.toFixed(3)).padStart(10),
      (mfu === null ? dash : `${(100 * mfu).toFixed(2)}%`).padStart(11),
    ].join(' '));
  }
  return lines.join('\n');
}

export interface AuditJsonRow { ledger_flops: number; analytic_flops: number; ratio: number | null; bytes: number; gpu_ms: number | null }

export function auditJson(rows: readonly AuditRow[]): Record<string, AuditJsonRow> {
  return Object.fromEntries(rows.map((r) => [r.phase, { ledger_flops: r.ledgerFlops, analytic_flops: r.analyticFlops, ratio: ratioOf(r), bytes: r.bytes, gpu_ms: r.gpuMs }]));
}
