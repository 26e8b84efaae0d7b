// A `juice <command>` child process for the tests that kill and resume runs: its output gathered, its exit awaited.
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readMetrics } from '../../train/metrics.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface JuiceRun { child: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }

/** Starts `juice <command> ...args` (node with tsx, no launcher) with extra environment variables. */
export function juiceRun(command: string, args: string[], env: Record<string, string> = {}): JuiceRun {
  const child = spawn(process.execPath, ['--import', path.join(ROOT, 'bin/tsx.mjs'), path.join(ROOT, 'bin/juice.ts'), command, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => out, exited };
}

/** Waits (up to 2 minutes) until the run has printed `text`, or has exited; asserts that it printed it. */
export async function waitFor(run: JuiceRun, text: string): Promise<void> {
  for (let i = 0; i < 2400 && !run.output().includes(text); i++) {
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(run.output().includes(text), `waited for '${text}'; the child printed:\n${run.output()}`);
}

/** Starts the run with the test hook that stalls inside `step`, and SIGKILLs it there: a crash mid step. */
export async function killedInStep(command: string, args: string[], step: number, env: Record<string, string> = {}): Promise<void> {
  const run = juiceRun(command, args, { ...env, JUICE_TEST_STALL_IN_STEP: String(step) });
  await waitFor(run, `stalling in step ${step}`);
  run.child.kill('SIGKILL');
  await run.exited;
}

/** The run folder's train records as [step, loss] (metrics.jsonl). */
export const trainLosses = (dir: string) => readMetrics(path.join(dir, 'metrics.jsonl')).records.filter((r) => r.type === 'train').map((r) => [r.step, r.loss]);
