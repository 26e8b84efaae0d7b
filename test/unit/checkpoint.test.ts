import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors } from '../../engine/safetensors.ts';
import {
  CheckpointError, MARKER_FILE, latestCheckpoint, listCheckpoints, recoverCheckpoints, rotateCheckpoints,
  verifyCheckpoint, writeCheckpoint, type CheckpointFile, type CheckpointPhase,
} from '../../train/checkpoint.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-checkpoint-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = () => path.join(root, `run-${counter++}`);
const CHILD = path.join(import.meta.dirname, '..', 'support', 'checkpoint_child.ts');

/** The same contents test/support/checkpoint_child.ts writes: every value carries the step. */
function contents(step: number, floats = 1024): CheckpointFile[] {
  return [
    { name: 'model.safetensors', kind: 'safetensors', tensors: { w: { shape: [floats], data: new Float32Array(floats).fill(step) } } },
    { name: 'optimizer.safetensors', kind: 'safetensors', tensors: { m: { shape: [floats], data: new Float32Array(floats).fill(-step) } } },
    { name: 'trainer_state.json', kind: 'json', value: { step } },
  ];
}

/** Loads a checkpoint folder and asserts every file holds `step`. */
function assertHoldsStep(dir: string, step: number): void {
  const w = readSafetensors(path.join(dir, 'model.safetensors')).get('w')!.data;
  const m = readSafetensors(path.join(dir, 'optimizer.safetensors')).get('m')!.data;
  assert.ok(w.every((v) => v === step), `${dir}: model holds step ${step}`);
  assert.ok(m.every((v) => v === -step), `${dir}: optimizer holds step ${step}`);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')), { step });
}

function throwsCheckpointError(fn: () => unknown, ...needles: string[]): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CheckpointError);
    for (const n of needles) assert.ok((e as Error).message.includes(n), `${JSON.stringify((e as Error).message)} should contain ${JSON.stringify(n)}`);
    return;
  }
  assert.unreachable('expected a CheckpointError');
}

/** Runs the child, waits for a stdout line matching `until`, kills it with SIGKILL, and waits for it to exit. */
function runChildAndKill(args: string[], until: (line: string) => boolean): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    let buffered = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (!killed && until(line)) { killed = true; child.kill('SIGKILL'); }
      }
    });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' && killed) resolve(lines);
      else reject(new Error(`child exited with ${code ?? signal} before being killed; stdout ${JSON.stringify(lines)}, stderr ${stderr}`));
    });
  });
}

test('round trip: safetensors, json, bytes and copied files; the marker lists them with sizes', () => {
  const out = freshDir();
  fs.mkdirSync(out, { recursive: true });
  const tokenizer = path.join(out, 'tokenizer-source.json');
  fs.writeFileSync(tokenizer, '{"model":{}}');
  const files: CheckpointFile[] = [
    { name: 'model.safetensors', kind: 'safetensors', tensors: {
      w: { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      ids: { shape: [2], data: Int32Array.from([7, -8]) },
      h: { dtype: 'BF16', shape: [2], data: Uint16Array.from([0x3f80, 0xc000]) },
    }, metadata: { format: 'pt' } },
    { name: 'trainer_state.json', kind: 'json', value: { step: 5, epoch: 0.5 } },
    { name: 'rng.bin', kind: 'bytes', data: Uint8Array.from([1, 2, 3]) },
    { name: 'tokenizer.json', kind: 'copy', from: tokenizer },
  ];
  const written = writeCheckpoint(out, 5, files);
  assert.is(written, path.join(out, 'checkpoint-5'));

  const latest = latestCheckpoint(out)!;
  assert.is(latest.step, 5);
  assert.is(latest.path, written);
  assert.equal(latest.skipped, []);
  assert.equal(latest.marker.files.map((f) => f.name), ['model.safetensors', 'trainer_state.json', 'rng.bin', 'tokenizer.json']);
  assert.equal(latest.marker.files.find((f) => f.name === 'rng.bin')!.bytes, 3);

  const t = readSafetensors(path.join(written, 'model.safetensors'));
  assert.equal([...t.get('w')!.data], [1, 2, 3, 4, 5, 6]);
  assert.equal([...t.get('ids')!.data], [7, -8]);
  assert.equal([...t.get('h')!.data], [1, -2]);
  assert.equal(JSON.parse(fs.readFileSync(path.join(written, 'trainer_state.json'), 'utf8')), { step: 5, epoch: 0.5 });
  assert.equal([...fs.readFileSync(path.join(written, 'rng.bin'))], [1, 2, 3]);
  assert.is(fs.readFileSync(path.join(written, 'tokenizer.json'), 'utf8'), '{"model":{}}');
  // Nothing but the checkpoint is left behind.
  assert.equal(fs.readdirSync(out).sort(), ['checkpoint-5', 'tokenizer-source.json']);
  assert.equal(fs.readdirSync(written).sort(), [MARKER_FILE, 'model.safetensors', 'rng.bin', 'tokenizer.json', 'trainer_state.json']);
});

test('the marker check rejects a truncated or missing file, and latestCheckpoint falls back', () => {
  const out = freshDir();
  writeCheckpoint(out, 1, contents(1));
  const two = writeCheckpoint(out, 2, contents(2));
  const model = path.join(two, 'model.safetensors');
  fs.truncateSync(model, fs.statSync(model).size - 1);
  throwsCheckpointError(() => verifyCheckpoint(two), model, 'truncated');
  const latest = latestCheckpoint(out)!;
  assert.is(latest.step, 1);
  assert.is(latest.skipped.length, 1);
  assert.ok(latest.skipped[0]!.reason.includes('model.safetensors'));

  writeCheckpoint(out, 2, contents(2));
  fs.rmSync(path.join(two, 'trainer_state.json'));
  throwsCheckpointError(() => verifyCheckpoint(two), 'trainer_state.json', 'missing');
  fs.rmSync(path.join(two, MARKER_FILE));
  throwsCheckpointError(() => verifyCheckpoint(two), MARKER_FILE, 'incomplete');
  fs.writeFileSync(path.join(two, MARKER_FILE), '{"format":"juice-checkp');
  throwsCheckpointError(() => verifyCheckpoint(two), MARKER_FILE, 'not valid JSON');
  assert.is(latestCheckpoint(freshDir()), undefined);
});

test('errors name the folder and the file; a failed write leaves nothing behind', () => {
  const out = freshDir();
  writeCheckpoint(out, 1, contents(1));
  throwsCheckpointError(
    () => writeCheckpoint(out, 2, [...contents(2), { name: 'tokenizer.json', kind: 'copy', from: path.join(out, 'nope.json') }]),
    path.join(out, 'checkpoint-2', 'tokenizer.json'), 'nope.json');
  throwsCheckpointError(() => writeCheckpoint(out, 2, [{ name: '../evil', kind: 'bytes', data: 'x' }]), '../evil');
  throwsCheckpointError(() => writeCheckpoint(out, 2, [{ name: MARKER_FILE, kind: 'bytes', data: 'x' }]), 'reserved');
  throwsCheckpointError(() => writeCheckpoint(out, 2, [...contents(2), ...contents(2)]), 'listed twice');
  throwsCheckpointError(() => writeCheckpoint(out, 2, [{
    name: 'model.safetensors', kind: 'safetensors', tensors: { w: { shape: [3], data: new Float32Array(2) } },
  }]), path.join(out, 'checkpoint-2', 'model.safetensors'), 'elements');
  throwsCheckpointError(() => writeCheckpoint(out, -1, contents(1)), 'non-negative');
  assert.equal(fs.readdirSync(out), ['checkpoint-1']);
  assert.is(latestCheckpoint(out)!.step, 1);
});

test('rewriting an existing step replaces it and leaves no leftovers', () => {
  const out = freshDir();
  writeCheckpoint(out, 3, contents(3));
  writeCheckpoint(out, 3, contents(7)); // same folder, new contents
  assertHoldsStep(path.join(out, 'checkpoint-3'), 7);
  assert.equal(fs.readdirSync(out), ['checkpoint-3']);
});

for (const phase of ['file', 'marker'] as CheckpointPhase[]) {
  test(`SIGKILL at phase '${phase}' of a new checkpoint keeps the previous one; the next write cleans up`, async () => {
    const out = freshDir();
    writeCheckpoint(out, 1, contents(1));
    const lines = await runChildAndKill([out, 'block', '2', phase], (l) => l === `at ${phase}`);
    assert.equal(lines, [`at ${phase}`]);
    const leftovers = fs.readdirSync(out).filter((n) => n.startsWith('.tmp-checkpoint-2-'));
    assert.is(leftovers.length, 1, 'the half-written temp folder is there');
    const latest = latestCheckpoint(out)!;
    assert.is(latest.step, 1);
    assertHoldsStep(latest.path, 1);
    writeCheckpoint(out, 2, contents(2));
    assert.equal(fs.readdirSync(out).sort(), ['checkpoint-1', 'checkpoint-2']);
    assert.is(latestCheckpoint(out)!.step, 2);
  });
}

test("SIGKILL between a rewrite's two renames: the step stays loadable, and is renamed back", async () => {
  const out = freshDir();
  writeCheckpoint(out, 1, contents(1));
  await runChildAndKill([out, 'block', '1', 'aside'], (l) => l === 'at aside');
  assert.not.ok(fs.existsSync(path.join(out, 'checkpoint-1')), 'killed after the old one went aside');
  const latest = latestCheckpoint(out)!;
  assert.is(latest.step, 1);
  assert.ok(path.basename(latest.path).startsWith('.old-checkpoint-1-'));
  assertHoldsStep(latest.path, 1);
  recoverCheckpoints(out);
  assert.equal(fs.readdirSync(out), ['checkpoint-1']);
  assertHoldsStep(path.join(out, 'checkpoint-1'), 1);
});

test('SIGKILL at random moments of a writer saving large checkpoints in a loop', async () => {
  const out = freshDir();
  // 3 x 4 MiB per checkpoint; kill after a few saves, at a moment that is not a save boundary.
  for (let trial = 0; trial < 3; trial++) {
    const killAfter = 2 + trial;
    let saved = 0;
    await runChildAndKill([out, 'loop', String(1 << 20)], (l) => {
      if (l.startsWith('saved ')) saved = Number(l.slice(6));
      return saved >= killAfter;
    });
    const latest = latestCheckpoint(out)!;
    assert.ok(latest.step >= killAfter, `latest ${latest.step} >= ${killAfter}`);
    assertHoldsStep(latest.path, latest.step);
    for (const c of listCheckpoints(out)) assertHoldsStep(c.path, c.step);
  }
});

test('rotation keeps the newest K complete checkpoints and leaves a running writer alone', () => {
  const out = freshDir();
  for (const step of [10, 20, 30, 40, 50]) writeCheckpoint(out, step, contents(step, 4));
  fs.rmSync(path.join(out, 'checkpoint-30', MARKER_FILE)); // incomplete: not counted, not removed
  // A temp folder of a live process (pid 1 always exists) must survive rotation and cleanup.
  const running = path.join(out, '.tmp-checkpoint-60-1');
  fs.mkdirSync(running);
  const removed = rotateCheckpoints(out, 2);
  assert.equal(removed, [path.join(out, 'checkpoint-10'), path.join(out, 'checkpoint-20')]);
  assert.equal(listCheckpoints(out).map((c) => c.step), [40, 50]);
  assert.equal(rotateCheckpoints(out, 1), [path.join(out, 'checkpoint-40')]);
  assert.equal(rotateCheckpoints(out, 1), []);
  assert.equal(fs.readdirSync(out).sort(), ['.tmp-checkpoint-60-1', 'checkpoint-30', 'checkpoint-50']);
  writeCheckpoint(out, 70, contents(70, 4));
  assert.ok(fs.existsSync(running), "a live writer's temp folder survives the next write's cleanup");
  throwsCheckpointError(() => rotateCheckpoints(out, 0), '>= 1');
});

test.run();
