// Crash-safe checkpoint folders.
//
// A checkpoint is a folder `outDir/checkpoint-<step>` holding the files the caller lists
// (safetensors tensor maps, JSON, raw bytes, copied files such as the tokenizer) and a
// completion marker, MARKER_FILE, that lists every file with its size. Only a folder whose
// marker is present, parses, names the folder's step and matches every listed file's size is
// a checkpoint; anything else is ignored by latestCheckpoint().
//
// Writing (writeCheckpoint):
//   1. clean up what crashed writers left in outDir (see recoverCheckpoints)
//   2. write every file into `outDir/.tmp-checkpoint-<step>-<pid>`, fsync each
//   3. write the marker, fsync it, fsync the temp folder
//   4. if checkpoint-<step> exists: rename it to `.old-checkpoint-<step>-<pid>`, fsync outDir
//   5. rename the temp folder to checkpoint-<step>, fsync outDir
//   6. remove the old folder from step 4
// A kill -9 anywhere leaves every earlier checkpoint untouched. Between 4 and 5 the step's
// checkpoint lives under its `.old-` name: latestCheckpoint() accepts it there, and the next
// write (or recoverCheckpoints) renames it back. A temp folder is never read as a checkpoint,
// even when its marker is complete (the writer died before step 5): it is simply removed.
//
// Removal (rotateCheckpoints) renames a folder to `.rm-checkpoint-<step>-<pid>` before deleting
// it, so a crash mid-delete never leaves a half-deleted folder under a checkpoint name.
//
// Leftovers are attributed to a writer by the pid in their name and only touched when that
// process is gone (or is us). This is a single-host scheme: pids mean nothing across machines
// sharing a filesystem, and two live writers of the same outDir are not supported.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../engine/safetensors.ts';

export const MARKER_FILE = 'checkpoint_complete.json';
const MARKER_FORMAT = 'juice-checkpoint';
const MARKER_VERSION = 1;

/** One file of a checkpoint; `name` is a plain file name inside the checkpoint folder. */
export type CheckpointFile =
  | { name: string; kind: 'safetensors'; tensors: Record<string, TensorToWrite>; metadata?: Record<string, string> }
  | { name: string; kind: 'json'; value: unknown }
  | { name: string; kind: 'bytes'; data: Uint8Array | string }
  | { name: string; kind: 'copy'; from: string };

export interface CheckpointMarker {
  format: typeof MARKER_FORMAT;
  version: number;
  step: number;
  /** Every file of the checkpoint except the marker, in write order, with its size in bytes. */
  files: { name: string; bytes: number }[];
  /** ISO 8601 time the marker was written. */
  created: string;
}

/** Points in writeCheckpoint where a test can stop (or kill) the writer. */
export type CheckpointPhase =
  | 'file'     // a file was written and fsynced (detail: its name)
  | 'marker'   // the marker was written and the temp folder fsynced
  | 'aside'    // an existing checkpoint-<step> was renamed to .old-... (detail: that path)
  | 'renamed'; // the temp folder is now checkpoint-<step>, the old one not yet removed

export interface WriteCheckpointOptions {
  /** Called synchronously at each phase; for crash tests. */
  hook?: (phase: CheckpointPhase, detail: string) => void;
}

export interface FoundCheckpoint {
  step: number;
  /** The folder to load from: checkpoint-<step>, or its `.old-` name after a crash mid-rewrite. */
  path: string;
  marker: CheckpointMarker;
}

export interface LatestCheckpoint extends FoundCheckpoint {
  /** Newer checkpoint-* folders that failed the marker check, with the reason. */
  skipped: { path: string; reason: string }[];
}

/** Every error of this module; the message names the folder, and the file when there is one. */
export class CheckpointError extends Error {
  readonly dir: string;
  readonly file: string | undefined;
  constructor(dir: string, message: string, file?: string) {
    super(`${file !== undefined ? path.join(dir, file) : dir}: ${message}`);
    this.name = 'CheckpointError';
    this.dir = dir;
    this.file = file;
  }
}

const FINAL_RE = /^checkpoint-(\d+)$/;
const LEFTOVER_RE = /^\.(tmp|old|rm)-checkpoint-(\d+)-(\d+)$/;

export function checkpointPath(outDir: string, step: number): string {
  return path.join(outDir, `checkpoint-${step}`);
}

function checkStep(outDir: string, step: number): void {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new CheckpointError(outDir, `checkpoint step must be a non-negative integer, got ${step}`);
  }
}

function checkName(dir: string, name: string, seen: Set<string>): void {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[\\/\0]/.test(name)) {
    throw new CheckpointError(dir, `checkpoint file name must be a plain file name, got ${JSON.stringify(name)}`);
  }
  if (name === MARKER_FILE) throw new CheckpointError(dir, `the name is reserved for the completion marker`, name);
  if (seen.has(name)) throw new CheckpointError(dir, `listed twice`, name);
  seen.add(name);
}

/** fsync a file or folder by path. Folders cannot be fsynced everywhere (Windows); that is tolerated. */
function fsyncPath(p: string, isDir: boolean): void {
  let fd: number;
  try {
    fd = fs.openSync(p, isDir ? 'r' : 'r+');
  } catch (e) {
    if (isDir && ['EISDIR', 'EPERM', 'EACCES'].includes((e as NodeJS.ErrnoException).code ?? '')) return;
    throw e;
  }
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    if (!(isDir && ['EINVAL', 'EPERM', 'EBADF', 'EISDIR'].includes((e as NodeJS.ErrnoException).code ?? ''))) throw e;
  } finally {
    fs.closeSync(fd);
  }
}

function writeFileDurable(file: string, data: Uint8Array | string): void {
  const fd = fs.openSync(file, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(1 << 30, bytes.length - done));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

function removeAside(outDir: string, dir: string, step: number): void {
  const doomed = path.join(outDir, `.rm-checkpoint-${step}-${process.pid}`);
  fs.rmSync(doomed, { recursive: true, force: true });
  fs.renameSync(dir, doomed);
  fsyncPath(outDir, true);
  fs.rmSync(doomed, { recursive: true, force: true });
}

/**
 * Reads and checks a checkpoint folder's marker: it parses, names this folder's step (when the
 * folder is called checkpoint-<step>), and every listed file exists with the listed size.
 * Returns the marker or throws a CheckpointError naming the folder and file.
 */
export function verifyCheckpoint(dir: string, expectedStep?: number): CheckpointMarker {
  const markerPath = path.join(dir, MARKER_FILE);
  let text: string;
  try {
    text = fs.readFileSync(markerPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(dir, code === 'ENOENT' ? 'no completion marker: the checkpoint is incomplete' : `cannot read the completion marker: ${(e as Error).message}`, MARKER_FILE);
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(dir, `completion marker is not valid JSON: ${(e as Error).message}`, MARKER_FILE);
  }
  const marker = m as CheckpointMarker;
  if (
    typeof m !== 'object' || m === null || marker.format !== MARKER_FORMAT || !Number.isSafeInteger(marker.step) ||
    !Array.isArray(marker.files) ||
    !marker.files.every((f) => typeof f?.name === 'string' && Number.isSafeInteger(f?.bytes))
  ) {
    throw new CheckpointError(dir, `completion marker is not a ${MARKER_FORMAT} marker`, MARKER_FILE);
  }
  if (marker.version > MARKER_VERSION) {
    throw new CheckpointError(dir, `completion marker version ${marker.version} is newer than this reader (${MARKER_VERSION})`, MARKER_FILE);
  }
  const named = FINAL_RE.exec(path.basename(dir));
  const step = expectedStep ?? (named ? Number(named[1]) : undefined);
  if (step !== undefined && marker.step !== step) {
    throw new CheckpointError(dir, `completion marker is for step ${marker.step}, the folder for step ${step}`, MARKER_FILE);
  }
  for (const f of marker.files) {
    if (f.name === MARKER_FILE || /[\\/\0]/.test(f.name) || f.name === '.' || f.name === '..' || f.name === '') {
      throw new CheckpointError(dir, `completion marker lists an invalid file name ${JSON.stringify(f.name)}`, MARKER_FILE);
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(path.join(dir, f.name));
    } catch {
      throw new CheckpointError(dir, `listed in the completion marker but missing`, f.name);
    }
    if (!st.isFile()) throw new CheckpointError(dir, `listed in the completion marker but not a regular file`, f.name);
    if (st.size !== f.bytes) {
      throw new CheckpointError(dir, `is ${st.size} bytes, the completion marker says ${f.bytes} (truncated or overwritten)`, f.name);
    }
  }
  return marker;
}

/**
 * Cleans what crashed writers left in outDir: temp folders are removed, a checkpoint left aside
 * by an interrupted rewrite is renamed back when its step has no complete checkpoint (else
 * removed), half-removed folders are removed. Only leftovers of processes that are gone (or of
 * this process) are touched. writeCheckpoint() calls this first.
 */
export function recoverCheckpoints(outDir: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(outDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  let changed = false;
  for (const name of entries) {
    const m = LEFTOVER_RE.exec(name);
    if (!m) continue;
    const [kind, step, pid] = [m[1]!, Number(m[2]), Number(m[3])];
    if (pid !== process.pid && isAlive(pid)) continue;
    const p = path.join(outDir, name);
    if (kind === 'old') {
      const final = checkpointPath(outDir, step);
      let finalOk = false;
      try { verifyCheckpoint(final, step); finalOk = true; } catch { /* missing or incomplete */ }
      let oldOk = false;
      try { verifyCheckpoint(p, step); oldOk = true; } catch { /* not worth keeping */ }
      if (!finalOk && oldOk) {
        if (fs.existsSync(final)) removeAside(outDir, final, step);
        fs.renameSync(p, final);
        changed = true;
        continue;
      }
    }
    fs.rmSync(p, { recursive: true, force: true });
    changed = true;
  }
  if (changed) fsyncPath(outDir, true);
}

/**
 * Writes `outDir/checkpoint-<step>` atomically (see the top of this file) and returns its path.
 * An existing checkpoint of the same step is replaced, atomically too.
 */
export function writeCheckpoint(
  outDir: string,
  step: number,
  files: CheckpointFile[],
  options: WriteCheckpointOptions = {},
): string {
  checkStep(outDir, step);
  const hook = options.hook ?? (() => {});
  fs.mkdirSync(outDir, { recursive: true });
  recoverCheckpoints(outDir);

  const final = checkpointPath(outDir, step);
  const tmp = path.join(outDir, `.tmp-checkpoint-${step}-${process.pid}`);
  const seen = new Set<string>();
  for (const f of files) checkName(final, f.name, seen);

  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    const listed: CheckpointMarker['files'] = [];
    for (const f of files) {
      const target = path.join(tmp, f.name);
      try {
        switch (f.kind) {
          case 'safetensors':
            writeSafetensors(target, f.tensors, f.metadata); // fsyncs the file and renames in place
            break;
          case 'json':
            writeFileDurable(target, JSON.stringify(f.value, null, 2) + '\n');
            break;
          case 'bytes':
            writeFileDurable(target, f.data);
            break;
          case 'copy':
            fs.copyFileSync(f.from, target);
            fsyncPath(target, false);
            break;
          default:
            throw new Error(`unknown file kind ${JSON.stringify((f as { kind: unknown }).kind)}`);
        }
      } catch (e) {
        if (e instanceof CheckpointError) throw e;
        const from = f.kind === 'copy' ? ` (copying ${f.from})` : '';
        throw new CheckpointError(final, `writing it failed${from}: ${(e as Error).message}`, f.name);
      }
      listed.push({ name: f.name, bytes: fs.statSync(target).size });
      hook('file', f.name);
    }
    const marker: CheckpointMarker = {
      format: MARKER_FORMAT, version: MARKER_VERSION, step, files: listed, created: new Date().toISOString(),
    };
    writeFileDurable(path.join(tmp, MARKER_FILE), JSON.stringify(marker, null, 2) + '\n');
    fsyncPath(tmp, true);
    hook('marker', MARKER_FILE);

    let aside: string | undefined;
    if (fs.existsSync(final)) {
      aside = path.join(outDir, `.old-checkpoint-${step}-${process.pid}`);
      fs.rmSync(aside, { recursive: true, force: true });
      fs.renameSync(final, aside);
      fsyncPath(outDir, true);
      hook('aside', aside);
    }
    fs.renameSync(tmp, final);
    fsyncPath(outDir, true);
    hook('renamed', final);
    if (aside) fs.rmSync(aside, { recursive: true, force: true });
    return final;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(final, `writing the checkpoint failed: ${(e as Error).message}`);
  }
}

/** Every complete checkpoint in outDir, oldest first (an interrupted rewrite's `.old-` folder counts for its step). */
export function listCheckpoints(outDir: string): FoundCheckpoint[] {
  return scan(outDir).found;
}

function scan(outDir: string): { found: FoundCheckpoint[]; skipped: { step: number; path: string; reason: string }[] } {
  let entries: string[];
  try {
    entries = fs.readdirSync(outDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { found: [], skipped: [] };
    throw e;
  }
  const byStep = new Map<number, FoundCheckpoint>();
  const skipped: { step: number; path: string; reason: string }[] = [];
  for (const name of entries) {
    const m = FINAL_RE.exec(name);
    if (!m) continue;
    const step = Number(m[1]);
    const p = path.join(outDir, name);
    try {
      byStep.set(step, { step, path: p, marker: verifyCheckpoint(p, step) });
    } catch (e) {
      skipped.push({ step, path: p, reason: (e as Error).message });
    }
  }
  // A rewrite that crashed between its two renames: the step's checkpoint is under .old-.
  for (const name of entries) {
    const m = LEFTOVER_RE.exec(name);
    if (!m || m[1] !== 'old') continue;
    const step = Number(m[2]);
    if (byStep.has(step)) continue;
    const p = path.join(outDir, name);
    try {
      byStep.set(step, { step, path: p, marker: verifyCheckpoint(p, step) });
    } catch { /* an old copy that is itself incomplete is not a checkpoint */ }
  }
  return { found: [...byStep.values()].sort((a, b) => a.step - b.step), skipped };
}

/** The complete checkpoint with the highest step, or undefined when there is none. */
export function latestCheckpoint(outDir: string): LatestCheckpoint | undefined {
  const { found, skipped } = scan(outDir);
  const latest = found.at(-1);
  if (!latest) return undefined;
  return {
    ...latest,
    skipped: skipped.filter((s) => s.step > latest.step).sort((a, b) => b.step - a.step).map(({ path: p, reason }) => ({ path: p, reason })),
  };
}

/**
 * `--save-total-limit K`: removes the oldest complete checkpoints until `keep` remain, and
 * returns the removed paths. The newest is never removed; folders that fail the marker check
 * and leftovers of running writers are not touched.
 */
export function rotateCheckpoints(outDir: string, keep: number): string[] {
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new CheckpointError(outDir, `save total limit must be an integer >= 1, got ${keep}`);
  }
  const found = listCheckpoints(outDir).filter((c) => FINAL_RE.test(path.basename(c.path)));
  const doomed = found.slice(0, Math.max(0, found.length - keep));
  for (const c of doomed) removeAside(outDir, c.path, c.step);
  return doomed.map((c) => c.path);
}
