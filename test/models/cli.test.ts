// The juice command line as a user runs it, through the launcher bin/juice in child processes: refused
// command lines exit 2 with one line naming the flag and the value, before any GPU work; a command that
// could not do its work exits non-zero; SIGTERM to the launcher's process ends the work. No GPU except the
// demo that SIGTERM stops.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const JUICE = path.join(ROOT, 'bin', 'juice');
const HF = path.join(ROOT, 'test', 'fixtures', 'hf');
const TINY_TOKENIZER = path.join(ROOT, 'test', 'fixtures', 'tokenizer');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-cli-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

/** Runs the launcher from a directory other than the project's, as an installed `juice` would be. */
function juice(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(JUICE, args, { cwd: tmpDir, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code 2, nothing on stdout, and one line on stderr holding every one of `parts`. */
function refused(args: string[], ...parts: string[]): void {
  const { code, stdout, stderr } = juice(...args);
  const what = `juice ${args.join(' ')}`;
  assert.is(code, 2, `${what}: exit ${code}\n${stderr}`);
  assert.is(stdout, '', `${what} printed on stdout`);
  assert.is(stderr.trimEnd().split('\n').length, 1, `${what}: more than one line:\n${stderr}`);
  for (const p of parts) assert.ok(stderr.includes(p), `${what}: '${p}' not in: ${stderr}`);
}

test('--help: the usage from the command table, and each command\'s options with their ranges', () => {
  const top = juice('--help');
  assert.is(top.code, 0);
  for (const name of ['demo', 'verify', 'inspect', 'generate']) assert.match(top.stdout, new RegExp(`^  ${name} `, 'm'));
  assert.not.match(top.stdout, /shared\//);
  const demo = juice('demo', '--help');
  assert.is(demo.code, 0);
  assert.match(demo.stdout, /^usage: juice demo /);
  assert.match(demo.stdout, /--lr X +constant learning rate of every method; a number in \(0, 1\], default /);
  const none = juice();
  assert.is(none.code, 2);
  refused(['frobnicate'], "unknown command 'frobnicate'");
});

test('demo: non-integers, out-of-range numbers, unknown flags and missing values are refused', () => {
  refused(['demo', '--steps', '1.5'], '--steps', "'1.5'");
  refused(['demo', '--steps', '0x10'], '--steps', "'0x10'");
  refused(['demo', '--batch', '0.5'], '--batch', "'0.5'");
  refused(['demo', '--seed', '1e300'], '--seed', "'1e300'");
  refused(["demo", "--lr", "1e9"], "--lr", "'1e9'", "(0, 1]");
  refused(['demo', '--lr', 'fast'], '--lr', "'fast'");
  refused(['demo', '--bogus'], "unknown option '--bogus'");
  refused(['demo', '--steps'], '--steps needs a value');
  refused(['demo', '--steps', '--batch', '2'], '--steps needs a value');
  refused(['demo', 'extra'], "unexpected argument 'extra'");
});

test('demo: an output path whose folder does not exist is refused before any work', () => {
  refused(['demo', '--ledger-json', '/nonexistent/dir/l.json'], '--ledger-json', '/nonexistent/dir');
  refused(['demo', '--ledger-json', tmpDir], '--ledger-json', 'is a directory');
});

test('verify and inspect: the folder must exist; inspect exits 1 when the weights are rejected', () => {
  refused(['verify'], 'DIR is required');
  refused(['verify', path.join(tmpDir, 'nowhere')], 'nowhere');
  refused(['inspect', path.join(HF, 'mistral'), '--seq-len', '16.5'], '--seq-len', "'16.5'");
  const ok = juice('inspect', path.join(HF, 'mistral'));
  assert.is(ok.code, 0, ok.stderr);
  // A GPT-NeoX config beside Mistral's weights: every name mismatches.
  const dir = path.join(tmpDir, 'mismatch');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(HF, 'gpt_neox', 'config.json'), path.join(dir, 'config.json'));
  fs.copyFileSync(path.join(HF, 'mistral', 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const rejected = juice('inspect', dir);
  assert.is(rejected.code, 1, rejected.stdout + rejected.stderr);
  assert.match(rejected.stdout, /weights: /);
});

/** The gpt_neox fixture with the tiny tokenizer and max_position_embeddings cut to `positions`. */
function modelFolder(name: string, positions: number): string {
  const dir = path.join(tmpDir, name);
  fs.mkdirSync(dir);
  const config = JSON.parse(fs.readFileSync(path.join(HF, 'gpt_neox', 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: positions }));
  fs.copyFileSync(path.join(HF, 'gpt_neox', 'model.safetensors'), path.join(dir, 'model.safetensors'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TINY_TOKENIZER, f), path.join(dir, f));
  return dir;
}

test('generate: the prompt and --max-new-tokens must fit max_position_embeddings', () => {
  const dir = modelFolder('short', 4); // 'hello world' is 3 tokens
  refused(['generate', '--prompt', 'x'], '--model is required');
  refused(['generate', '--model', dir, '--prompt', 'x', '--weights-dtype', 'f8'], '--weights-dtype', "'f8'");
  refused(['generate', '--model', dir, '--prompt', 'hello world hello world'], '--prompt', '4 positions');
  refused(['generate', '--model', dir, '--prompt', 'hello world', '--max-new-tokens', '2'], '--max-new-tokens', '4 positions', 'at most 1');
});

test('generate: a weight_map shard that is a directory exits non-zero', () => {
  const dir = modelFolder('shard-dir', 256);
  const header = new SafetensorsHeader(path.join(dir, 'model.safetensors'));
  fs.rmSync(path.join(dir, 'model.safetensors'));
  fs.mkdirSync(path.join(dir, 'shard.safetensors'));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(header.names.map((n) => [n, 'shard.safetensors'])) }));
  const { code, stderr } = juice('generate', '--model', dir, '--prompt', 'hello world', '--max-new-tokens', '1');
  assert.ok(code !== 0 && code !== null, `exit ${code}`);
  assert.match(stderr, /EISDIR|shard/);
});

/** The tensor names of a safetensors file, from its JSON header. */
class SafetensorsHeader {
  readonly names: string[];
  constructor(file: string) {
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    this.names = Object.keys(JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))).filter((k) => k !== '__metadata__');
  }
}

/** Processes whose environment holds `marker` (this test's children and anything they left behind). */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(marker)) found.push(Number(entry));
    } catch { /* gone, or not ours to read */ }
  }
  return found;
}

test('SIGTERM to the launcher ends the work promptly and leaves no process behind', async () => {
  const marker = `JUICE_CLI_TEST=${process.pid}-${Date.now()}`;
  const [key, value] = marker.split('=');
  const child = spawn(JUICE, ['demo', '--steps', '100000'], { cwd: tmpDir, env: { ...process.env, [key]: value }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('exit', (code, signal) => done({ code, signal })));
  let out = '';
  await new Promise<void>((started, failed) => {
    const timer = setTimeout(() => failed(new Error(`no first line in 120 s: ${out}`)), 120_000);
    child.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes('\n')) { clearTimeout(timer); started(); } });
    child.on('exit', () => { clearTimeout(timer); failed(new Error(`exited before printing: ${out}`)); });
  });
  assert.match(out, /^juice demo: /);
  const t0 = Date.now();
  child.kill('SIGTERM');
  const timeout = new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), 5_000).unref());
  const result = await Promise.race([exited, timeout]);
  if (result === 'timeout') child.kill('SIGKILL');
  assert.ok(result !== 'timeout', 'still running 5 s after SIGTERM');
  assert.is(result.signal, 'SIGTERM', `ended by ${JSON.stringify(result)} after ${Date.now() - t0} ms`);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(processesWith(marker), [], 'processes left behind');
});

test.run();
