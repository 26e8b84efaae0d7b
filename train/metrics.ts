// metrics.jsonl: one JSON object per line in a run folder, appended and fdatasynced line by line.
//
//   {"type":"train","step":12,"epoch":0.4,"loss":2.31,"lr":0.0001,"grad_norm":1.7,"tokens":49152,
//    "tokens_per_s":10234.5,"live_gpu_bytes":123456789,"time":1718000000.123}
//   {"type":"eval","step":12,"eval_loss":2.4,"time":...}
//
// `step` is the number of optimizer steps completed (the train line of step k is written after the
// k-th step; checkpoint-k holds the state after it). Resuming from checkpoint-k keeps every line
// with step <= k and drops the rest. `time` is Unix seconds, added when the caller does not give one.
// A non-finite number (a NaN loss) is written as null, which is all JSON can say.
//
// A run killed mid-write leaves at most a truncated last line; the reader skips it and says so,
// and the writer removes it on open. Any other line that is not a JSON object with an integer
// step is an error naming the file and line.

import * as fs from 'node:fs';
import * as path from 'node:path';

export const METRICS_FILE = 'metrics.jsonl';

export interface TrainMetrics {
  type: 'train';
  step: number;
  epoch: number;
  loss: number | null;
  lr: number;
  grad_norm: number | null;
  /** Tokens processed in this step (or cumulative: the caller decides and keeps to it). */
  tokens: number;
  tokens_per_s: number;
  live_gpu_bytes: number;
  time?: number;
  [key: string]: unknown;
}

export interface EvalMetrics {
  type: 'eval';
  step: number;
  eval_loss: number | null;
  time?: number;
  [key: string]: unknown;
}

/** A line as read back: train and eval lines, or any other `type` a later writer added. */
export type MetricsRecord = TrainMetrics | EvalMetrics | { type: string; step: number; [key: string]: unknown };

export class MetricsError extends Error {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, message: string, line?: number) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${message}`);
    this.name = 'MetricsError';
    this.file = file;
    this.line = line;
  }
}

export interface ReadMetricsResult {
  records: MetricsRecord[];
  /** The file ended in a partial line (a killed writer), which was skipped. */
  truncatedTail: boolean;
  /** Byte length of the complete lines: the file is sound when truncated to this. */
  validBytes: number;
}

function parseLine(file: string, text: string, lineNo: number): MetricsRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new MetricsError(file, `not valid JSON: ${(e as Error).message}`, lineNo);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MetricsError(file, 'not a JSON object', lineNo);
  const o = v as Record<string, unknown>;
  if (!Number.isSafeInteger(o.step) || (o.step as number) < 0) {
    throw new MetricsError(file, `"step" must be a non-negative integer, got ${JSON.stringify(o.step)}`, lineNo);
  }
  if (o.type === undefined) o.type = 'train';
  if (typeof o.type !== 'string') throw new MetricsError(file, `"type" must be a string, got ${JSON.stringify(o.type)}`, lineNo);
  return o as MetricsRecord;
}

/** Reads a metrics file; a missing file reads as empty. */
export function readMetrics(file: string): ReadMetricsResult {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], truncatedTail: false, validBytes: 0 };
    throw new MetricsError(file, `cannot read: ${(e as Error).message}`);
  }
  const records: MetricsRecord[] = [];
  let start = 0;
  let lineNo = 0;
  let truncatedTail = false;
  while (start < buf.length) {
    lineNo++;
    const nl = buf.indexOf(0x0a, start);
    const end = nl === -1 ? buf.length : nl;
    const text = buf.subarray(start, end).toString('utf8').trim();
    if (nl === -1) {
      // The last line has no newline: complete if it parses (killed between '}' and '\n'), else cut short.
      if (text !== '') {
        try { records.push(parseLine(file, text, lineNo)); } catch { truncatedTail = true; }
      }
      const validBytes = truncatedTail ? start : buf.length;
      return { records, truncatedTail, validBytes };
    }
    if (text !== '') records.push(parseLine(file, text, lineNo));
    start = nl + 1;
  }
  return { records, truncatedTail, validBytes: buf.length };
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  } catch { /* not every platform can fsync a folder */ }
}

function encode(record: object): string {
  return JSON.stringify(record) + '\n';
}

/**
 * Keeps only the lines with step <= `step` (a resume from checkpoint-<step>), rewriting the file
 * atomically (temp file, fsync, rename, fsync the folder). Returns how many records were dropped.
 */
export function truncateMetrics(file: string, step: number): number {
  const { records, truncatedTail } = readMetrics(file);
  const kept = records.filter((r) => r.step <= step);
  if (kept.length === records.length && !truncatedTail) return 0;
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, kept.map(encode).join(''));
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw new MetricsError(file, `rewriting failed: ${(e as Error).message}`);
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
  return records.length - kept.length;
}

export interface OpenMetricsOptions {
  /** Resuming from checkpoint-<resumeStep>: drop lines with a later step first. */
  resumeStep?: number;
}

/** Appends lines to `runDir/metrics.jsonl`, each written and fdatasynced before log() returns. */
export class MetricsWriter {
  readonly file: string;
  private fd: number | undefined;

  private constructor(file: string, fd: number) {
    this.file = file;
    this.fd = fd;
  }

  /** Opens (creating runDir and the file if needed); a truncated last line from a killed run is removed. */
  static open(runDir: string, options: OpenMetricsOptions = {}): MetricsWriter {
    fs.mkdirSync(runDir, { recursive: true });
    const file = path.join(runDir, METRICS_FILE);
    if (options.resumeStep !== undefined) {
      truncateMetrics(file, options.resumeStep);
    } else {
      const { validBytes } = readMetrics(file); // also rejects a corrupt file before we append to it
      if (fs.existsSync(file)) {
        const size = fs.statSync(file).size;
        if (validBytes < size) fs.truncateSync(file, validBytes);
        else if (size > 0 && fs.readFileSync(file).at(-1) !== 0x0a) fs.appendFileSync(file, '\n');
      }
    }
    const existed = fs.existsSync(file);
    const fd = fs.openSync(file, 'a');
    if (!existed) fsyncDir(runDir);
    return new MetricsWriter(file, fd);
  }

  /** Appends one record; `time` is added when missing. */
  log(record: TrainMetrics | EvalMetrics): void {
    if (this.fd === undefined) throw new MetricsError(this.file, 'writer is closed');
    if (!Number.isSafeInteger(record.step) || record.step < 0) {
      throw new MetricsError(this.file, `"step" must be a non-negative integer, got ${record.step}`);
    }
    const line = encode({ ...record, time: record.time ?? Date.now() / 1000 });
    fs.writeSync(this.fd, line);
    fs.fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
