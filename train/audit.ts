// The audit of a training run: what each phase computed, as the ledger counted it (engine/ledger.ts) and as the
// analytic model says it should (train/audit_model.ts), side by side.
//
//   Workloads      the run records, as it goes, the shapes its phases really ran: every forward as `rows` rows
//                  of the padded length T the engine computes (the padding is computed like any token, and the
//                  head of a causal LM runs on all T positions, in training as in the reference pass); every
//                  generation batch as the rows that stepped with it (a finished row steps with the batch until
//                  the batch is compacted, models/causal_lm.ts), at the batch's left-padded prompt length; the
//                  optimizer's trainable elements per update; each LoRA merge
//   ledger.json    the run's ledger (entries by phase and op), saved beside metrics.jsonl at the end and with each
//                  checkpoint, so that a resumed run adds to what the first process counted
//   workloads.json the recorded workloads, with the model configs and the peak used for MFU
//
// `juice audit RUN_DIR [--json]` reads the two files back and prints the table (auditTable) or the JSON (auditJson).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ledger, type LedgerEntry, type LedgerRow } from '../engine/ledger.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { flush } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import type { GeneratedRow } from '../models/causal_lm.ts';
import type { ModelConfig } from '../models/config.ts';
import type { CheckpointFile } from './checkpoint.ts';
import {
  ADAMW_FLOPS_PER_ELEMENT, auditJson, auditRows, auditTable, phaseBreakdown, phaseFlops, PHASES, type FlopBreakdown, type AuditRow, type GenerationGroup, type HeadPositions,
  type LoraWorkload, type Phase,
} from './audit_model.ts';

export const LEDGER_FILE = 'ledger.json';
export const WORKLOADS_FILE = 'workloads.json';

/** The optimizers' kernels' counts per element (kernels/adamw.ts, kernels/rmsprop.ts; audit_model's ADAMW_FLOPS_PER_ELEMENT says 14). */
export const OPTIMIZER_KERNEL_FLOPS: Record<string, number> = { adamw: 15, rmsprop: 12 };

/** kernels' grad-norm count per gradient element (Σ g², one multiply and one add), charged to `optimizer` with the update. */
export const GRAD_NORM_FLOPS_PER_ELEMENT = 2;

type ForwardPhase = 'reference' | 'policy-forward' | 'policy-backward' | 'reward-forward' | 'reward-backward';

/** `count` forwards of rows of length T (padding included), the head on `head` positions, of the policy or the reward model. */
export interface ForwardRecord { phase: ForwardPhase; count: number; T: number; head: HeadPositions; model: 'policy' | 'reward'; lora: boolean }

export interface WorkloadsJson {
  format: 'juice-workloads';
  config: ModelConfig;
  rewardConfig: ModelConfig | null;
  lora: LoraWorkload | null;
  forward: ForwardRecord[];
  generation: (GenerationGroup & { lora: boolean })[];
  /** Trainable elements of each optimizer update, summed; with the grad norm's elements. */
  optimizerElements: number;
  optimizerFlopsPerElement: number;
  merges: number;
  /** Real (unpadded) tokens, for rates: generated tokens, and the tokens of the training forwards. */
  tokens: { generated: number; trained: number };
  peakTflops: number | null;
  peakSource: string | null;
}

/** The run's workloads, recorded as it goes (see the top of this file). */
export class Workloads {
  data: WorkloadsJson;

  constructor(config: ModelConfig, opts: { rewardConfig?: ModelConfig; lora?: LoraWorkload; optimizerFlopsPerElement?: number } = {}) {
    this.data = {
      format: 'juice-workloads', config, rewardConfig: opts.rewardConfig ?? null, lora: opts.lora ?? null, forward: [], generation: [],
      optimizerElements: 0, optimizerFlopsPerElement: (opts.optimizerFlopsPerElement ?? ADAMW_FLOPS_PER_ELEMENT) + GRAD_NORM_FLOPS_PER_ELEMENT,
      merges: 0, tokens: { generated: 0, trained: 0 }, peakTflops: null, peakSource: null,
    };
  }

  /** Restores what a checkpoint saved (the counts of the process that wrote it); a missing file leaves this as is. */
  restore(dir: string): void {
    const file = join(dir, WORKLOADS_FILE);
    if (!existsSync(file)) return;
    const saved = JSON.parse(readFileSync(file, 'utf8')) as WorkloadsJson;
    this.data = { ...saved, peakTflops: this.data.peakTflops, peakSource: this.data.peakSource };
  }

  forward(phase: ForwardPhase, count: number, T: number, head: HeadPositions, o: { model?: 'policy' | 'reward'; lora?: boolean } = {}): void {
    const r: ForwardRecord = { phase, count, T, head, model: o.model ?? 'policy', lora: o.lora ?? false };
    const same = this.data.forward.find((f) => f.phase === r.phase && f.T === r.T && f.head === r.head && f.model === r.model && f.lora === r.lora);
    if (same) same.count += count; else this.data.forward.push(r);
  }

  /** A forward and its backward, as TrainStep runs a micro-batch. */
  trained(model: 'policy' | 'reward', count: number, T: number, head: HeadPositions, lora: boolean): void {
    this.forward(model === 'policy' ? 'policy-forward' : 'reward-forward', count, T, head, { model, lora });
    this.forward(model === 'policy' ? 'policy-backward' : 'reward-backward', count, T, head, { model, lora });
  }

  /** One rollout: the rows that stepped in each generation batch (generationGroups). */
  generation(groups: readonly GenerationGroup[], lora: boolean, generatedTokens: number): void {
    for (const g of groups) {
      const same = this.data.generation.find((x) => x.promptLength === g.promptLength && x.newTokens === g.newTokens && x.lora === lora);
      if (same) same.count += g.count; else this.data.generation.push({ ...g, lora });
    }
    this.data.tokens.generated += generatedTokens;
  }

  optimizer(trainableElements: number): void { this.data.optimizerElements += trainableElements; }

  merge(): void { this.data.merges++; }

  /** The analytic FLOPs of every phase. */
  analytic(): Record<Phase, number> {
    const d = this.data, out = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;
    const loraOf = (on: boolean) => (on && d.lora ? d.lora : undefined);
    for (const f of d.forward) {
      const model = f.model === 'reward' ? d.rewardConfig ?? undefined : undefined;
      out[f.phase] += phaseFlops(d.config, f.phase, { sequences: [{ count: f.count, promptLength: f.T, responseLength: 0 }], head: f.head, lora: loraOf(f.lora), model });
    }
    for (const g of d.generation) out.generation += phaseFlops(d.config, 'generation', { sequences: [g], lora: loraOf(g.lora) });
    out.optimizer = d.optimizerElements * d.optimizerFlopsPerElement;
    if (d.lora) out.merge = d.merges * phaseFlops(d.config, 'merge', { lora: d.lora });
    return out;
  }

  /** The analytic FLOPs of the forward, backward and generation phases by part (products, bias, head, attention, LoRA). */
  breakdown(): Partial<Record<Phase, FlopBreakdown>> {
    const d = this.data, out: Partial<Record<Phase, FlopBreakdown>> = {};
    const add = (p: Phase, b: FlopBreakdown) => {
      const t = (out[p] ??= { matmul: 0, bias: 0, head: 0, attention: 0, lora: 0 });
      for (const k of Object.keys(b) as (keyof FlopBreakdown)[]) t[k] += b[k];
    };
    const loraOf = (on: boolean) => (on && d.lora ? d.lora : undefined);
    for (const f of d.forward) {
      const model = f.model === 'reward' ? d.rewardConfig ?? undefined : undefined;
      add(f.phase, phaseBreakdown(d.config, f.phase, { sequences: [{ count: f.count, promptLength: f.T, responseLength: 0 }], head: f.head, lora: loraOf(f.lora), model }));
    }
    for (const g of d.generation) add('generation', phaseBreakdown(d.config, 'generation', { sequences: [g], lora: loraOf(g.lora) }));
    return out;
  }

  toJSON(): WorkloadsJson { return this.data; }
}

/**
 * The rows each generation batch of a rollout stepped (models/rollout.ts: prompts longest first, in batches of
 * batchSize, each left-padded to its longest; models/causal_lm.ts: a finished row keeps stepping until at most
 * half of the batch runs, then the finished rows leave): one group per (padded prompt length, steps in the batch).
 */
export function generationGroups(promptLengths: readonly number[], rows: readonly GeneratedRow[], batchSize: number, maxNewTokens: number): GenerationGroup[] {
  const order = promptLengths.map((_, i) => i).sort((a, b) => promptLengths[b] - promptLengths[a] || a - b);
  const groups = new Map<string, GenerationGroup>();
  for (let first = 0; first < order.length; first += batchSize) {
    const members = order.slice(first, first + batchSize);
    const P = Math.max(...members.map((i) => promptLengths[i]));
    const doneAt = members.map((i) => (rows[i].finish === 'length' ? Infinity : rows[i].tokens.length));
    const stepped = members.map(() => 0);
    let batch = members.map((_, j) => j);
    for (let s = 1; s <= maxNewTokens; s++) {
      for (const j of batch) stepped[j]++;
      const running = batch.filter((j) => doneAt[j] > s);
      if (running.length === 0 || s === maxNewTokens) break;
      if (running.length <= batch.length / 2) batch = running;
    }
    for (const m of stepped) {
      const key = `${P}:${m}`;
      const g = groups.get(key);
      if (g) g.count++; else groups.set(key, { count: 1, promptLength: P, newTokens: m });
    }
  }
  return [...groups.values()];
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
  constructor(readonly workloads: Workloads) {}

  restore(dir: string): void {
    this.workloads.restore(dir);
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

  rows(): AuditRow[] { return auditRows(ledgerByPhase(this.entries()), this.workloads.analytic()); }

  /** Writes ledger.json and workloads.json into the run folder; returns the table. */
  write(outDir: string): string {
    writeFileSync(join(outDir, LEDGER_FILE), `${JSON.stringify(this.ledgerJson())}\n`);
    writeFileSync(join(outDir, WORKLOADS_FILE), `${JSON.stringify(this.workloads.toJSON(), null, 1)}\n`);
    return auditTable(this.rows(), { peakTflops: this.workloads.data.peakTflops ?? 0 });
  }
}

/** A finished run's audit rows from its folder's ledger.json and workloads.json. */
export function readRunAudit(runDir: string): { rows: AuditRow[]; workloads: WorkloadsJson } {
  for (const f of [LEDGER_FILE, WORKLOADS_FILE]) if (!existsSync(join(runDir, f))) throw new Error(`${runDir}: no ${f} (written at the end of juice irft / juice rft)`);
  const saved = JSON.parse(readFileSync(join(runDir, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] };
  const json = JSON.parse(readFileSync(join(runDir, WORKLOADS_FILE), 'utf8')) as WorkloadsJson;
  const w = new Workloads(json.config);
  w.data = json;
  return { rows: auditRows(ledgerByPhase(saved.entries), w.analytic()), workloads: json };
}

export { auditJson, auditTable };

/**
 * A short matmul probe: the TFLOP/s of n x n x n products (wall clock over a few submits, after a warm-up),
 * as the peak MFU is measured against when --peak-tflops is not given. Charged to the ledger phase `probe`.
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
  }
}
