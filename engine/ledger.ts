// The ledger: analytic FLOPs and bytes of every dispatch, by op and by phase, with optional GPU timings.
import type { Cost } from '../kernels/spec.ts';

export interface LedgerEntry extends Cost {
  op: string; // kernel-level op name, e.g. "matmul", "layerNormBackward"
  phase: string; // innermost phase label, e.g. "forward", "backward", "optimizer"
  dispatches: number;
  /** Summed GPU time in nanoseconds, when timing was on. */
  ns: number;
  timed: number; // how many dispatches contributed to ns
}

export interface LedgerRow extends Cost { key: string; dispatches: number; ns: number; timed: number }

export class Ledger {
  private entries = new Map<string, LedgerEntry>();
  private phases: string[] = [];
  /** When true the runtime times each dispatch with timestamp queries (one compute pass each). */
  timing = false;

  get phase(): string { return this.phases.length ? this.phases[this.phases.length - 1] : 'other'; }

  /** Runs fn with a phase label; phases nest and the innermost one is charged. */
  inPhase<T>(name: string, fn: () => T): T {
    this.phases.push(name);
    try { return fn(); } finally { this.phases.pop(); }
  }

  /** inPhase for async work (generation awaits its read-backs): nothing else may run on the GPU meanwhile. */
  async inPhaseAsync<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.phases.push(name);
    try { return await fn(); } finally { this.phases.pop(); }
  }

  /** Charges one dispatch of `op`; the FLOPs of ops fused into it (cost.fused) go to their own names, without a dispatch. */
  record(op: string, cost: Cost): LedgerEntry {
    let flops = cost.flops;
    for (const f of cost.fused ?? []) {
      this.entry(f.op).flops += f.flops;
      flops -= f.flops;
    }
    const e = this.entry(op);
    e.flops += flops;
    e.bytesRead += cost.bytesRead;
    e.bytesWritten += cost.bytesWritten;
    e.dispatches += 1;
    return e;
  }

  private entry(op: string): LedgerEntry {
    const phase = this.phase;
    const key = `${phase}\u0000${op}`;
    let e = this.entries.get(key);
    if (!e) this.entries.set(key, (e = { op, phase, flops: 0, bytesRead: 0, bytesWritten: 0, dispatches: 0, ns: 0, timed: 0 }));
    return e;
  }

  /** Forgets every entry, or those of one phase (e.g. a measurement that is not the run's work). */
  reset(phase?: string): void {
    if (phase === undefined) { this.entries.clear(); return; }
    for (const [key, e] of this.entries) if (e.phase === phase) this.entries.delete(key);
  }

  all(): LedgerEntry[] { return [...this.entries.values()]; }

  total(): LedgerRow { return sumRows('total', this.all()); }

  byOp(): LedgerRow[] { return group(this.all(), (e) => e.op); }

  byPhase(): LedgerRow[] { return group(this.all(), (e) => e.phase); }

  toJSON(): { entries: LedgerEntry[]; byOp: LedgerRow[]; byPhase: LedgerRow[]; total: LedgerRow } {
    return { entries: this.all(), byOp: this.byOp(), byPhase: this.byPhase(), total: this.total() };
  }

  /** A plain-text table by op, then by phase; with timings, GFLOP/s and GB/s beside each row. */
  table(): string {
    const rows = (title: string, list: LedgerRow[]) => {
      const timed = list.some((r) => r.timed > 0);
      const head = [title.padEnd(28), 'calls'.padStart(7), 'GFLOP'.padStart(12), 'MB read'.padStart(11), 'MB written'.padStart(11)];
      if (timed) head.push('ms'.padStart(9), 'GFLOP/s'.padStart(9), 'GB/s'.padStart(8));
      const lines = [head.join(' ')];
      for (const r of [...list, this.total()]) {
        const cells = [r.key.padEnd(28), String(r.dispatches).padStart(7), (r.flops / 1e9).toFixed(6).padStart(12),
          (r.bytesRead / 1e6).toFixed(3).padStart(11), (r.bytesWritten / 1e6).toFixed(3).padStart(11)];
        if (timed) {
          const s = r.ns / 1e9;
          cells.push((r.ns / 1e6).toFixed(3).padStart(9), (s > 0 ? r.flops / s / 1e9 : 0).toFixed(2).padStart(9),
            (s > 0 ? (r.bytesRead + r.bytesWritten) / s / 1e9 : 0).toFixed(2).padStart(8));
        }
        lines.push(cells.join(' '));
      }
      return lines.join('\n');
    };
    return `${rows('op', this.byOp())}\n\n${rows('phase', this.byPhase())}`;
  }
}

function sumRows(key: string, list: (Cost & { dispatches: number; ns: number; timed: number })[]): LedgerRow {
  const r: LedgerRow = { key, flops: 0, bytesRead: 0, bytesWritten: 0, dispatches: 0, ns: 0, timed: 0 };
  for (const e of list) {
    r.flops += e.flops; r.bytesRead += e.bytesRead; r.bytesWritten += e.bytesWritten;
    r.dispatches += e.dispatches; r.ns += e.ns; r.timed += e.timed;
  }
  return r;
}

function group(list: LedgerEntry[], key: (e: LedgerEntry) => string): LedgerRow[] {
  const m = new Map<string, LedgerEntry[]>();
  for (const e of list) { const k = key(e); if (!m.has(k)) m.set(k, []); m.get(k)!.push(e); }
  return [...m].map(([k, es]) => sumRows(k, es)).sort((a, b) => b.flops - a.flops || a.key.localeCompare(b.key));
}

export const ledger = new Ledger();
