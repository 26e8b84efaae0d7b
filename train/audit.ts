// The audit of a training run: what each phase computed, as the ledger counted it (engine/ledger.ts) and as the
// analytic model says it should (train/audit_model.ts), side by side.
//
//   Workloads      the run records, as it goes, the shapes its phases really ran: every forward as `rows` rows
//                  of the padded length T the engine computes (the padding is computed like any token, and the
//                  head of a causal LM runs on all T positions, in training as in the reference pass); generation
//                  as the model passes it ran (Generation.passes: rows of a prompt pass at its batch's left-padded
//                  length, rows of a decode step at its cache's columns; a finished row steps with the batch until
//                  the batch is compacted, models/causal_lm.ts), with the sampling; whether a forward trains (LoRA dropout) and in how many passes; the micro-batches of
//                  each update (the later ones add their gradients into the parameters'); the optimizer's trainable
//                  elements per update, per model; each LoRA merge; and with every forward record and generation
//                  pass, from the device, the tile sizes of the attention kernels that ran it (attentionPlanOf:
//                  the tensor cores' for a training pass under mixed precision, else the f32 kernels'), which the
//                  analytic model's executed attention needs
//   ledger.json    the run's ledger (entries by phase and op), saved beside metrics.jsonl at the end and with each
//                  checkpoint, so that a resumed run adds to what the first process counted
//   workloads.json the recorded workloads, with the model configs and the peak used for MFU
//
// `juice audit RUN_DIR [--json]` reads the two files back and prints the table (auditTable) or the JSON (auditJson).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DECODE_CHUNK } from '../kernels/attention_decode.ts';
import { headChunkRows } from '../kernels/token_logprobs.ts';
import type { DeviceLimits } from '../kernels/spec.ts';
import { deviceLimits } from '../engine/launch.ts';
import { ledger, type LedgerEntry, type LedgerRow } from '../engine/ledger.ts';
import { attentionKernels } from '../engine/ops/attention.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import type { GenerationPass } from '../models/causal_lm.ts';
import type { ModelConfig } from '../models/config.ts';
import type { CheckpointFile } from './checkpoint.ts';
import {
  ADAMW_FLOPS_PER_ELEMENT, addBreakdown, auditJson, auditRows, auditTable, phaseBreakdown, PHASES, RMSPROP_FLOPS_PER_ELEMENT, totalOf, usefulOf, zeroBreakdown,
  type AttentionPlan, type AuditRow, type FlopBreakdown, type ForwardWorkload, type HeadPositions, type LoraWorkload, type Phase, type Sampling, type Tiles,
} from './audit_model.ts';

export const LEDGER_FILE = 'ledger.json';
export const WORKLOADS_FILE = 'workloads.json';

/** The optimizers' update FLOPs per element (train/audit_model.ts, from kernels/adamw.ts and kernels/rmsprop.ts); the grad norm comes on top. */
export const OPTIMIZER_KERNEL_FLOPS: Record<string, number> = { adamw: ADAMW_FLOPS_PER_ELEMENT, rmsprop: RMSPROP_FLOPS_PER_ELEMENT };

type ForwardPhase = 'reference' | 'policy-forward' | 'policy-backward' | 'reward-forward' | 'reward-backward' | 'evaluation';
type ModelName = 'policy' | 'reward';

/**
 * `count` forwards of rows of length T (padding included), the head on `head` positions, of the policy or the
 * reward model, in `passes` calls; `training`: a forward that trains (the adapters' dropout runs); `attentionPlan`:
 * the tiles of the attention kernels they ran (and their backward and replayed layers).
 */
export interface ForwardRecord {
  phase: ForwardPhase; count: number; T: number; head: HeadPositions; model: ModelName; lora: boolean; training: boolean; passes: number; headChunks: number; attentionPlan: AttentionPlan;
}

/** Each model's optimizer updates: trainable elements summed over updates, and the update's FLOPs per element. */
export interface OptimizerRecord { elements: number; flopsPerElement: number }

export interface WorkloadsJson {
  format: 'juice-workloads';
  /**
   * 5: generation as the model passes that ran (rows by prompt length or cached columns), not rows by prompt and
   * new tokens. 4: the attention plan per forward record and generation group (the kernels that ran it, mixed precision's
   * tensor cores or the f32 kernels), not per model. 3: the fused head's chunks per forward record. 2: the grad norm
   * counted apart from the update, LoRA dropout, attention plans, sampling, accumulation.
   */
  version: 5;
  config: ModelConfig;
  rewardConfig: ModelConfig | null;
  lora: LoraWorkload | null;
  forward: ForwardRecord[];
  /** Generation's passes; those of an evaluation (the demo's greedy answers) say so (`phase`; absent: generation). */
  generation: (GenerationPass & { lora: boolean; attentionPlan: AttentionPlan; phase?: 'evaluation' })[];
  sampling: Sampling;
  /** Whether each model's backward replays its layers (--gradient-checkpointing). */
  gradientCheckpointing: Record<ModelName, boolean>;
  optimizer: Record<ModelName, OptimizerRecord>;
  /** Parameter elements into which a later micro-batch's gradients were added, per model. */
  accumulated: Record<ModelName, number>;
  /** Micro-batches trained since the last optimizer update, and by which model. */
  pending: { model: ModelName; microBatches: number } | null;
  merges: number;
  /** Real (unpadded) tokens, for rates: generated tokens, and the tokens of the training forwards. */
  tokens: { generated: number; trained: number };
  peakTflops: number | null;
  peakSource: string | null;
}

/**
 * The plan of the attention kernels that the model's passes at head dim D run on this device (attentionKernels):
 * inside autocast (mixedPrecision) the tensor cores' where they serve, else the f32 kernels'. No keyRange: the
 * training and scoring passes hide no keys (only generation's prompt pass does, outside autocast, where the f32
 * kernels' tiles do not depend on it).
 */
export function attentionPlanOf(D: number, mixedPrecision = false): AttentionPlan {
  const kernels = attentionKernels(D, { mixedPrecision });
  const t = (x: Tiles) => ({ BR: x.BR, BC: x.BC, ...(x.BCV ? { BCV: x.BCV } : {}), ...(x.BRV ? { BRV: x.BRV } : {}) });
  return { forward: t(kernels.forward), dkdv: t(kernels.dkdv), dq: t(kernels.dq), decodeChunk: DECODE_CHUNK };
}

export interface WorkloadsOptions {
  rewardConfig?: ModelConfig;
  lora?: LoraWorkload;
  /** The policy's update FLOPs per element (AdamW's by default); the reward model's is AdamW's. */
  optimizerFlopsPerElement?: number;
  /** The generation's sampling (greedy by default). */
  sampling?: Sampling;
  /** The attention plans, when not this device's attentionPlanOf (tests without a GPU). */
  attentionPlan?: (headDim: number, mixedPrecision: boolean) => AttentionPlan;
  /** The limits the fused head's chunks are planned with, when not this device's (tests without a GPU). */
  limits?: DeviceLimits;
  /** The models whose backward replays their layers (--gradient-checkpointing). */
  gradientCheckpointing?: Partial<Record<ModelName, boolean>>;
  /** The models whose training forwards and backwards run inside autocast (--mixed-precision: TrainStep with a loss scaler). */
  mixedPrecision?: Partial<Record<ModelName, boolean>>;
}

/** The run's workloads, recorded as it goes (see the top of this file). */
export class Workloads {
  data: WorkloadsJson;

  private readonly limits?: DeviceLimits;
  private readonly planOf: (headDim: number, mixedPrecision: boolean) => AttentionPlan;
  private readonly mixedPrecision: Record<ModelName, boolean>;

  constructor(config: ModelConfig, opts: WorkloadsOptions = {}) {
    this.limits = opts.limits;
    this.planOf = opts.attentionPlan ?? attentionPlanOf;
    this.mixedPrecision = { policy: opts.mixedPrecision?.policy ?? false, reward: opts.mixedPrecision?.reward ?? false };
    this.data = {
      format: 'juice-workloads', version: 5, config, rewardConfig: opts.rewardConfig ?? null, lora: opts.lora ?? null, forward: [], generation: [],
      sampling: opts.sampling ?? { temperature: 0, topK: 0, topP: 1 },
      gradientCheckpointing: { policy: opts.gradientCheckpointing?.policy ?? false, reward: opts.gradientCheckpointing?.reward ?? false },
      optimizer: { policy: { elements: 0, flopsPerElement: opts.optimizerFlopsPerElement ?? ADAMW_FLOPS_PER_ELEMENT }, reward: { elements: 0, flopsPerElement: ADAMW_FLOPS_PER_ELEMENT } },
      accumulated: { policy: 0, reward: 0 }, pending: null,
      merges: 0, tokens: { generated: 0, trained: 0 }, peakTflops: null, peakSource: null,
    };
  }

  /**
   * Restores what a checkpoint saved (the counts of the process that wrote it); a missing file leaves this as is.
   * Returns false for a file of an older format, whose counts mean other things: this process then counts afresh.
   */
  restore(dir: string): boolean {
    const file = join(dir, WORKLOADS_FILE);
    if (!existsSync(file)) return true;
    const saved = workloadsOfJson(JSON.parse(readFileSync(file, 'utf8')));
    if (!saved) return false;
    this.data = { ...saved, peakTflops: this.data.peakTflops, peakSource: this.data.peakSource };
    return true;
  }

  private modelConfig(model: ModelName): ModelConfig { return model === 'reward' ? this.data.rewardConfig ?? this.data.config : this.data.config; }

  /**
   * A forward of `count` rows of length T; `mixedPrecision`: it runs inside autocast (its attention on the tensor
   * cores where they serve).
   */
  forward(phase: ForwardPhase, count: number, T: number, head: HeadPositions, o: { model?: ModelName; lora?: boolean; training?: boolean; mixedPrecision?: boolean } = {}): void {
    const model = o.model ?? 'policy', c = this.modelConfig(model);
    // The fused head's chunks over this pass's count·T positions (an LM head read for log-probs: every position).
    const headChunks = c.head === 'lm' && head === 'all' ? headChunkRows(this.limits ?? deviceLimits(), count * T, c.vocabSize, c.hidden).chunks : 1;
    const attentionPlan = this.planOf(c.headDim, o.mixedPrecision ?? false);
    const r: ForwardRecord = { phase, count, T, head, model, lora: o.lora ?? false, training: o.training ?? false, passes: 1, headChunks, attentionPlan };
    const same = this.data.forward.find((f) => f.phase === r.phase && f.T === r.T && f.head === r.head && f.model === r.model && f.lora === r.lora && f.training === r.training
      && f.headChunks === r.headChunks && samePlan(f.attentionPlan, attentionPlan));
    if (same) { same.count += count; same.passes++; } else this.data.forward.push(r);
  }

  /** A micro-batch's forward and its backward, as TrainStep runs it (inside autocast for a model trained in mixed precision). */
  trained(model: ModelName, count: number, T: number, head: HeadPositions, lora: boolean): void {
    const o = { model, lora, training: true, mixedPrecision: this.mixedPrecision[model] };
    this.forward(model === 'policy' ? 'policy-forward' : 'reward-forward', count, T, head, o);
    this.forward(model === 'policy' ? 'policy-backward' : 'reward-backward', count, T, head, o);
    const p = this.data.pending;
    this.data.pending = p && p.model === model ? { model, microBatches: p.microBatches + 1 } : { model, microBatches: 1 };
  }

  /** One rollout: the model passes it ran (Rollout.passes); phase 'evaluation' for one that answers held-out prompts (not counted as generated tokens). */
  generation(passes: readonly GenerationPass[], lora: boolean, generatedTokens: number, phase: 'generation' | 'evaluation' = 'generation'): void {
    const attentionPlan = this.planOf(this.data.config.headDim, false);
    const tag = phase === 'evaluation' ? { phase } : {};
    for (const g of passes) {
      const same = this.data.generation.find((x) => x.tokens === g.tokens && x.filled === g.filled && x.lora === lora && x.phase === tag.phase && samePlan(x.attentionPlan, attentionPlan));
      if (same) same.count += g.count; else this.data.generation.push({ ...g, lora, attentionPlan, ...tag });
    }
    if (phase === 'generation') this.data.tokens.generated += generatedTokens;
  }

  /** An optimizer update of `trainableElements`, of the model whose micro-batches were recorded last (trained). */
  optimizer(trainableElements: number): void {
    const p = this.data.pending, model = p?.model ?? 'policy';
    this.data.optimizer[model].elements += trainableElements;
    if (p && p.microBatches > 1) this.data.accumulated[model] += (p.microBatches - 1) * trainableElements;
    this.data.pending = null;
  }

  merge(): void { this.data.merges++; }

  /** The analytic FLOPs of every phase, by part. */
  breakdown(): Record<Phase, FlopBreakdown> {
    const d = this.data, out = Object.fromEntries(PHASES.map((p) => [p, zeroBreakdown()])) as Record<Phase, FlopBreakdown>;
    const loraOf = (on: boolean) => (on && d.lora ? d.lora : undefined);
    for (const f of d.forward) {
      const w: ForwardWorkload = {
        sequences: [{ count: f.count, promptLength: f.T, responseLength: 0 }], head: f.head, lora: loraOf(f.lora), model: this.modelConfig(f.model),
        training: f.training, attentionPlan: f.attentionPlan, passes: f.passes, headChunks: f.headChunks,
      };
      addBreakdown(out[f.phase], phaseBreakdown(d.config, f.phase, w));
      if (f.phase.endsWith('-backward') && d.gradientCheckpointing[f.model]) {
        const recompute = `${f.phase}-recompute` as 'policy-backward-recompute' | 'reward-backward-recompute';
        addBreakdown(out[recompute], phaseBreakdown(d.config, recompute, w));
      }
    }
    for (const g of d.generation) {
      // An evaluation's answers are greedy, whatever the run samples with.
      const sampling = g.phase === 'evaluation' ? { temperature: 0, topK: 0, topP: 1 } : d.sampling;
      addBreakdown(out[g.phase ?? 'generation'], phaseBreakdown(d.config, 'generation', { passes: [g], lora: loraOf(g.lora), sampling, attentionPlan: g.attentionPlan }));
    }
    out['policy-backward'].accumulate += d.accumulated.policy;
    out['reward-backward'].accumulate += d.accumulated.reward;
    for (const m of ['policy', 'reward'] as const) addBreakdown(out.optimizer, phaseBreakdown(d.config, 'optimizer', { trainableElements: d.optimizer[m].elements, flopsPerElement: d.optimizer[m].flopsPerElement }));
    if (d.lora) addBreakdown(out.merge, phaseBreakdown(d.config, 'merge', { lora: d.lora }), d.merges);
    return out;
  }

  /** The analytic FLOPs of every phase (attention as executed). */
  analytic(): Record<Phase, number> { return mapPhases(this.breakdown(), totalOf); }

  /** The useful FLOPs of every phase (attention over the visible keys). */
  useful(): Record<Phase, number> { return mapPhases(this.breakdown(), usefulOf); }

  toJSON(): WorkloadsJson { return this.data; }
}

/** Σ of the numel of the trainable parameters: what one optimizer update touches (and the grad norm reads). */
export function trainableElements(params: { entries(): { param: { numel: number } }[] }): number {
  return params.entries().reduce((n, e) => n + e.param.numel, 0);
}

/** Records of equal shapes merge only when the same kernels ran them (a resumed run may run on another device). */
function samePlan(a: AttentionPlan, b: AttentionPlan): boolean { return JSON.stringify(a) === JSON.stringify(b); }

function mapPhases(b: Record<Phase, FlopBreakdown>, f: (x: FlopBreakdown) => number): Record<Phase, number> {
  return Object.fromEntries(PHASES.map((p) => [p, f(b[p])])) as Record<Phase, number>;
}

/** Ledger entries of this process added to those a checkpoint saved (a resumed run). */
export function mergedLedgerEntries(saved: readonly LedgerEntry[], current: readonly LedgerEntry[]): LedgerEntry[] {
  const m = new Map<string, LedgerEntry>();
  for (const e of [...saved, ...current]) {
    const key = `${e.phase}\u0000${e.op}`;
    const x = m.get(key);
    if (!x) { m.set(key, { ...e }); continue; }
    x.flops += e.flops; x.bytesRead += e.bytesRead; x.bytesWritten += e.bytesWritten; x.dispatches += e.dispatches; x.ns += e.ns; x.timed += e.timed;
  }
  return [...m.values()];
}

export function ledgerByPhase(entries: readonly LedgerEntry[]): LedgerRow[] {
  const m = new Map<string, LedgerRow>();
  for (const e of entries) {
    const r = m.get(e.phase) ?? { key: e.phase, flops: 0, bytesRead: 0, bytesWritten: 0, dispatches: 0, ns: 0, timed: 0 };
    r.flops += e.flops; r.bytesRead += e.bytesRead; r.bytesWritten += e.bytesWritten; r.dispatches += e.dispatches; r.ns += e.ns; r.timed += e.timed;
    m.set(e.phase, r);
  }
  return [...m.values()];
}

/** The run's ledger and workloads as files: for a checkpoint (resume) and for the run folder (juice audit). */
export class RunAudit {
  private saved: LedgerEntry[] = [];
  // A run counts its own work: what this process computed before (another run in it, a test) is not the run's.
  constructor(readonly workloads: Workloads) { ledger.reset(); }

  /** A checkpoint's ledger and workloads, or neither (workloads of an older format: the audit starts afresh). */
  restore(dir: string): void {
    if (!this.workloads.restore(dir)) return;
    const file = join(dir, LEDGER_FILE);
    if (existsSync(file)) this.saved = (JSON.parse(readFileSync(file, 'utf8')) as { entries: LedgerEntry[] }).entries;
  }

  entries(): LedgerEntry[] { return mergedLedgerEntries(this.saved, ledger.all()); }

  ledgerJson(): { entries: LedgerEntry[]; byPhase: LedgerRow[] } {
    const entries = this.entries();
    return { entries, byPhase: ledgerByPhase(entries) };
  }

  files(): CheckpointFile[] {
    return [{ name: LEDGER_FILE, kind: 'json', value: this.ledgerJson() }, { name: WORKLOADS_FILE, kind: 'json', value: this.workloads.toJSON() }];
  }

  rows(): AuditRow[] { return auditRows(ledgerByPhase(this.entries()), this.workloads.analytic(), this.workloads.useful()); }

  /** Writes ledger.json and workloads.json into the run folder; returns the table. */
  write(outDir: string): string {
    writeFileSync(join(outDir, LEDGER_FILE), `${JSON.stringify(this.ledgerJson())}\n`);
    writeFileSync(join(outDir, WORKLOADS_FILE), `${JSON.stringify(this.workloads.toJSON(), null, 1)}\n`);
    return auditTable(this.rows(), { peakTflops: this.workloads.data.peakTflops ?? 0 });
  }
}

/** Version 4's generation record: rows of a prompt length that took newTokens, each alone in its batch's columns. */
type GenerationGroupV4 = { count: number; promptLength: number; newTokens: number; lora: boolean; attentionPlan: AttentionPlan };

/**
 * A workloads.json as this version reads it, or null for one older than 4. Version 4's generation groups become the
 * passes they stood for (a prompt pass of promptLength, then newTokens - 1 decode steps from there: the same counts),
 * so that a run resumed across the change keeps its audit.
 */
export function workloadsOfJson(json: WorkloadsJson | (Omit<WorkloadsJson, 'version' | 'generation'> & { version: 4; generation: GenerationGroupV4[] })): WorkloadsJson | null {
  if (json.version === 5) return json;
  if (json.version !== 4) return null;
  const generation = json.generation.flatMap(({ count, promptLength: P, newTokens: m, lora, attentionPlan }) => (m === 0 ? [] : [
    { count, tokens: P, filled: 0, lora, attentionPlan },
    ...Array.from({ length: m - 1 }, (_, i) => ({ count, tokens: 1, filled: P + i, lora, attentionPlan })),
  ]));
  return { ...json, version: 5, generation };
}

/** A finished run's audit rows from its folder's ledger.json and workloads.json. */
export function readRunAudit(runDir: string): { rows: AuditRow[]; workloads: WorkloadsJson } {
  for (const f of [LEDGER_FILE, WORKLOADS_FILE]) if (!existsSync(join(runDir, f))) throw new Error(`${runDir}: no ${f} (written at the end of juice sft, juice irft and juice rft)`);
  const saved = JSON.parse(readFileSync(join(runDir, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] };
  const json = workloadsOfJson(JSON.parse(readFileSync(join(runDir, WORKLOADS_FILE), 'utf8')));
  if (!json) throw new Error(`${runDir}: ${WORKLOADS_FILE} is of an older format (before version 4): run it again to audit it`);
  const w = new Workloads(json.config);
  w.data = json;
  return { rows: auditRows(ledgerByPhase(saved.entries), w.analytic(), w.useful()), workloads: json };
}

export { auditJson, auditTable };

/**
 * A short matmul probe: the TFLOP/s of n x n x n products (wall clock over a few submits, after a warm-up),
 * as the peak MFU is measured against when --peak-tflops is not given. Charged to the ledger phase `probe`, which it
 * clears again: the probe is not the run's work.
 */
export async function matmulProbe(n = 512, repeats = 8): Promise<number> {
  const a = Tensor.fromArray(new Float32Array(n * n).fill(0.001), [n, n]).keep(), b = Tensor.fromArray(new Float32Array(n * n).fill(0.001), [n, n]).keep();
  const run = async (k: number) => {
    const outs: Tensor[] = [];
    ledger.inPhase('probe', () => { for (let i = 0; i < k; i++) outs.push(tidy(() => matmul(a, b).keep())); });
    flush();
    await outs[outs.length - 1].toArray();
    for (const o of outs) o.dispose();
  };
  try {
    await run(1);
    const t0 = performance.now();
    await run(repeats);
    const seconds = (performance.now() - t0) / 1000;
    return (2 * n * n * n * repeats) / seconds / 1e12;
  } finally {
    a.dispose();
    b.dispose();
    ledger.reset('probe');
  }
}

/**
 * The peak a trainer's audit measures MFU against: --peak-tflops, else, when every kernel is timed (--time-kernels),
 * the matmul probe; else none, since without GPU times there is no MFU to give.
 */
export async function auditPeak(o: { 'peak-tflops'?: number; 'time-kernels': boolean }): Promise<Pick<WorkloadsJson, 'peakTflops' | 'peakSource'>> {
  if (o['peak-tflops'] !== undefined) return { peakTflops: o['peak-tflops'], peakSource: '--peak-tflops' };
  if (!o['time-kernels']) return { peakTflops: null, peakSource: null };
  return { peakTflops: await matmulProbe(), peakSource: 'matmul probe (512^3, f32)' };
}
