// `juice sft` as a child process on a tiny byte-level GPT-NeoX (test/support/byte_model.ts): N steps in one run
// against runs killed (SIGKILL) inside a step and inside a checkpoint write, then resumed, and a LoRA run stopped
// by SIGTERM inside step 4 (exit 143, checkpoint-4 written) and resumed: the final model.safetensors (or
// adapter_model.safetensors) and optimizer.safetensors are byte-identical, and so are the metrics' losses. With the
// binding size cut (JUICE_MAX_BINDING_BYTES) a wide vocabulary's embedding, head, gradients and optimizer states are
// bound in windows: the same training as with one binding, and a killed run resumes byte-identical there too.
// Mixed precision (--mixed-precision f16) tracks the f32 run's losses, resumes byte-identical with its loss scaler's
// state, and skips every step (weights and optimizer untouched) while an injected 2^100 scale overflows.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readRunAudit } from '../../train/audit.ts';
import { readMetrics } from '../../train/metrics.ts';
import { latestCheckpoint } from '../../train/checkpoint.ts';
import { readSafetensors } from '../../engine/safetensors.ts';
import { relErr as relativeError } from '../support/util.ts';
import { tinyConfigJson, writeAdditionData, writeByteModel } from '../support/byte_model.ts';
import { juiceRun, killedInStep, trainLosses, waitFor } from '../support/juice_child.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-sft-resume-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const model = writeByteModel(path.join(tmp, 'model'));
const data = writeAdditionData(path.join(tmp, 'data.jsonl'), 20);

const STEPS = 6;
const common = ['--model', model, '--data', data, '--max-steps', String(STEPS), '--batch', '3', '--grad-accum', '2', '--lr', '2e-3',
  '--warmup', '1', '--schedule', 'cosine', '--save-steps', '2', '--log-steps', '1', '--max-length', '56', '--max-prompt-length', '40', '--seed', '7',
  '--adam-beta2', '0.95', '--weight-decay', '0.1'];

async function complete(args: string[]): Promise<string> {
  const run = juiceRun('sft', args);
  const { code } = await run.exited;
  assert.is(code, 0, run.output());
  return run.output();
}

const bytes = (dir: string, file: string) => fs.readFileSync(path.join(dir, `checkpoint-${STEPS}`, file));

/** The run folder's audit: each phase's FLOPs (ledger and analytic) and the recorded workloads. */
function audit(dir: string): unknown {
  const { rows, workloads: w } = readRunAudit(dir);
  return { flops: rows.filter((r) => r.ledgerFlops > 0).map((r) => [r.phase, r.ledgerFlops, r.analyticFlops]), forward: w.forward, optimizer: w.optimizer, accumulated: w.accumulated, tokens: w.tokens };
}

function assertSameEnd(a: string, b: string, weights: string): void {
  assert.ok(bytes(a, weights).equals(bytes(b, weights)), `${weights} differs`);
  assert.ok(bytes(a, 'optimizer.safetensors').equals(bytes(b, 'optimizer.safetensors')), 'optimizer.safetensors differs');
  assert.equal(trainLosses(b), trainLosses(a));
  assert.equal(audit(b), audit(a)); // the resumed run's audit adds to what the first process counted
}

const straight = path.join(tmp, 'straight');

test('an uninterrupted run: checkpoints every 2 steps, a model folder at the end', async () => {
  await complete([...common, '--out', straight]);
  const dir = path.join(straight, `checkpoint-${STEPS}`);
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'optimizer.safetensors', 'trainer_state.json'])
    assert.ok(fs.existsSync(path.join(dir, f)), `${f} in the checkpoint`);
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8'));
  assert.is(state.global_step, STEPS);
  assert.is(state.log_history.filter((r: { type: string }) => r.type === 'train').length, STEPS);
  assert.is(state.config['adam-beta2'], 0.95);
  assert.equal(trainLosses(straight).map(([s]) => s), [1, 2, 3, 4, 5, 6]);
  assert.ok(fs.existsSync(path.join(straight, 'plots', 'loss.svg')));
});

test('SIGKILL inside step 3, then --resume from checkpoint-2: byte-identical weights and optimizer state', async () => {
  const out = path.join(tmp, 'killed-in-step');
  await killedInStep('sft', [...common, '--out', out], 3);
  assert.is(latestCheckpoint(out)?.step, 2);
  const resumed = await complete([...common, '--out', out, '--resume']);
  assert.match(resumed, 'resumed from');
  assertSameEnd(straight, out, 'model.safetensors');
});

test('SIGKILL inside the write of checkpoint-4: it is not taken; resume from checkpoint-2 gives the same bytes', async () => {
  const out = path.join(tmp, 'killed-in-checkpoint');
  const run = juiceRun('sft', [...common, '--out', out], { JUICE_TEST_STALL_IN_CHECKPOINT: '4' });
  await waitFor(run, 'stalling in checkpoint 4');
  run.child.kill('SIGKILL');
  await run.exited;
  assert.ok(fs.readdirSync(out).some((n) => n.startsWith('.tmp-checkpoint-4-')), 'the half-written checkpoint is left as a temp folder');
  assert.is(latestCheckpoint(out)?.step, 2);
  await complete([...common, '--out', out, '--resume', path.join(out, 'checkpoint-2')]);
  assertSameEnd(straight, out, 'model.safetensors');
});

test('LoRA with dropout: SIGTERM finishes the step, checkpoints it, exits 143; the resumed run matches', async () => {
  const lora = [...common, '--lora-r', '4', '--lora-alpha', '8', '--lora-dropout', '0.1', '--lora-targets', 'query_key_value,dense_h_to_4h'];
  const a = path.join(tmp, 'lora-straight'), b = path.join(tmp, 'lora-stopped');
  await complete([...lora, '--out', a]);
  assert.ok(fs.existsSync(path.join(a, `checkpoint-${STEPS}`, 'adapter_config.json')));
  const run = juiceRun('sft', [...lora, '--out', b], { JUICE_TEST_STALL_IN_STEP: '4' });
  await waitFor(run, 'stalling in step 4');
  run.child.kill('SIGTERM'); // the hook waits for a signal in step 4: the step then finishes and is saved
  const { code } = await run.exited;
  assert.is(code, 143, run.output());
  assert.is(latestCheckpoint(b)?.step, 4, 'a checkpoint of the step under way when the signal came');
  await complete([...lora, '--out', b, '--resume']);
  assertSameEnd(a, b, 'adapter_model.safetensors');
});

test('--max-shard-size: checkpoints are sharded with an index, and a run resumes from one', async () => {
  const out = path.join(tmp, 'sharded');
  const args = [...common.filter((a, i, all) => a !== '--max-steps' && all[i - 1] !== '--max-steps'), '--out', out, '--max-shard-size', '40KB'];
  await complete([...args, '--max-steps', '2']);
  const dir = path.join(out, 'checkpoint-2');
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  const shards = [...new Set(Object.values(index.weight_map))] as string[];
  assert.ok(shards.length >= 3, `shards: ${shards.join(', ')}`);
  for (const f of shards) assert.ok(fs.statSync(path.join(dir, f)).size <= 40_000 + 4096, `${f} within the limit (header aside)`);
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
  await complete([...args, '--max-steps', '3', '--resume']);
  assert.ok(fs.existsSync(path.join(out, 'checkpoint-3', 'model.safetensors.index.json')));
});

test('tables larger than one binding: with the binding cut to 64 KiB (a 2048-token vocabulary in 5 windows), the same losses and model as with one binding, and a resume is byte-identical', async () => {
  const wide = writeByteModel(path.join(tmp, 'wide-model'), tinyConfigJson({ vocab_size: 2048 }));
  const args = common.map((a, i) => (common[i - 1] === '--model' ? wide : common[i - 1] === '--max-steps' ? '4' : a));
  const cut = { JUICE_MAX_BINDING_BYTES: String(2 ** 16) };
  const whole = path.join(tmp, 'wide-whole'), windowed = path.join(tmp, 'wide-windowed'), resumed = path.join(tmp, 'wide-resumed');
  await complete([...args, '--out', whole]);
  const run = juiceRun('sft', [...args, '--out', windowed], cut);
  assert.is((await run.exited).code, 0, run.output());
  const lw = trainLosses(whole) as number[][], lc = trainLosses(windowed) as number[][];
  assert.equal(lc.map(([s]) => s), [1, 2, 3, 4]);
  lc.forEach(([, l], i) => assert.ok(Math.abs(l - lw[i][1]) <= 1e-5 * Math.abs(lw[i][1]), `step ${i + 1}: loss ${l} windowed, ${lw[i][1]} whole`));
  const a = readSafetensors(path.join(whole, 'checkpoint-4', 'model.safetensors')), b = readSafetensors(path.join(windowed, 'checkpoint-4', 'model.safetensors'));
  for (const [name, t] of a) assert.ok(relativeError(b.get(name)!.data, t.data) <= 1e-4, `${name} after 4 steps`);
  // The cut reaches the child: at 4 KiB an activation no op windows is refused, naming the op and the binding.
  const tooSmall = juiceRun('sft', [...args, '--out', path.join(tmp, 'wide-refused')], { JUICE_MAX_BINDING_BYTES: '4096' });
  assert.is((await tooSmall.exited).code, 1, tooSmall.output());
  assert.match(tooSmall.output(), /binding '\w+' is tensor .* more than one binding holds \(maxStorageBufferBindingSize 4096\)/);
  // A run killed in step 3 under the cut resumes from checkpoint-2 to the uninterrupted run's bytes.
  await killedInStep('sft', [...args, '--out', resumed], 3, cut);
  const again = juiceRun('sft', [...args, '--out', resumed, '--resume'], cut);
  assert.is((await again.exited).code, 0, again.output());
  for (const f of ['model.safetensors', 'optimizer.safetensors'])
    assert.ok(fs.readFileSync(path.join(windowed, 'checkpoint-4', f)).equals(fs.readFileSync(path.join(resumed, 'checkpoint-4', f))), `${f} byte-identical`);
});

test('a fresh run refuses an --out that holds checkpoints; --config keys are checked', async () => {
  const run = juiceRun('sft', [...common, '--out', straight]);
  assert.is((await run.exited).code, 2);
  assert.match(run.output(), 'pass --resume');
  const config = path.join(tmp, 'bad.json');
  fs.writeFileSync(config, JSON.stringify({ 'max-stepz': 3 }));
  const bad = juiceRun('sft', [...common, '--out', path.join(tmp, 'x'), '--config', config]);
  assert.is((await bad.exited).code, 2);
  assert.match(bad.output(), "unknown key 'max-stepz'");
});

// Mixed precision: the products on f16 copies (f16 storage, f32 math on lavapipe), f32 master weights, GradScaler's
// dynamic loss scale, here growing after 3 clean steps so that the 6 steps cross a growth and a resume lands mid-count.
const mixed = [...common, '--mixed-precision', 'f16', '--loss-scale-growth-interval', '3'];
const mixedStraight = path.join(tmp, 'mixed-straight');
const trainRecords = (dir: string) => readMetrics(path.join(dir, 'metrics.jsonl')).records.filter((r) => r.type === 'train');
const lossScales = (dir: string) => trainRecords(dir).map((r) => [r.step, r.loss_scale, r.skipped]);

test('--mixed-precision f16: the losses track the f32 run within 1e-4 relative but are not its bits; the scale grows after 3 clean steps', async () => {
  await complete([...mixed, '--out', mixedStraight]);
  const l16 = trainLosses(mixedStraight) as number[][], l32 = trainLosses(straight) as number[][];
  assert.equal(l16.map(([s]) => s), [1, 2, 3, 4, 5, 6]);
  // f16's unit roundoff is 2^-11 (4.9e-4) per operand element; the loss averages many such errors (measured: 5e-6).
  l16.forEach(([, l], i) => assert.ok(Math.abs(l - l32[i][1]) <= 1e-4 * Math.abs(l32[i][1]), `step ${i + 1}: loss ${l} in f16, ${l32[i][1]} in f32`));
  assert.ok(l16.some(([, l], i) => l !== l32[i][1]), 'the f16 products ran: some loss differs from the f32 run\'s');
  assert.not.ok(bytes(mixedStraight, 'model.safetensors').equals(bytes(straight, 'model.safetensors')), 'the f16 run\'s weights differ from the f32 run\'s');
  assert.equal(lossScales(mixedStraight), [[1, 65536, 0], [2, 65536, 0], [3, 65536, 0], [4, 131072, 0], [5, 131072, 0], [6, 131072, 0]]);
  const state = JSON.parse(fs.readFileSync(path.join(mixedStraight, 'checkpoint-2', 'trainer_state.json'), 'utf8'));
  assert.is(state.config['mixed-precision'], 'f16');
  assert.equal(state.train_step.loss_scaler, { scale: 65536, growth_tracker: 2 });
});

test('--mixed-precision f16: SIGKILL inside step 3, resumed from checkpoint-2 (two clean steps counted): byte-identical, the same scales', async () => {
  const out = path.join(tmp, 'mixed-killed');
  await killedInStep('sft', [...mixed, '--out', out], 3);
  assert.is(latestCheckpoint(out)?.step, 2);
  await complete([...mixed, '--out', out, '--resume']);
  assertSameEnd(mixedStraight, out, 'model.safetensors');
  assert.equal(lossScales(out), lossScales(mixedStraight));
});

test('--mixed-precision f16 with a first scale of 2^100: the f16 gradients overflow, every step is skipped and the scale halved, the weights stay', async () => {
  const out = path.join(tmp, 'mixed-overflow');
  const args = common.map((a, i) => (common[i - 1] === '--max-steps' ? '3' : a));
  await complete([...args, '--out', out, '--mixed-precision', 'f16', '--loss-scale-init', String(2 ** 100)]);
  assert.equal(lossScales(out), [[1, 2 ** 100, 1], [2, 2 ** 99, 1], [3, 2 ** 98, 1]]);
  assert.ok(trainRecords(out).every((r) => r.grad_norm === null), 'the non-finite norms are logged as null');
  const state = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint-3', 'trainer_state.json'), 'utf8'));
  assert.equal(state.train_step, { stepCount: 3, loss_scaler: { scale: 2 ** 97, growth_tracker: 0 } });
  const before = readSafetensors(path.join(model, 'model.safetensors')), after = readSafetensors(path.join(out, 'checkpoint-3', 'model.safetensors'));
  for (const [name, t] of before) assert.equal(Array.from(after.get(name)!.data), Array.from(t.data), `${name} untouched`);
  for (const [name, t] of readSafetensors(path.join(out, 'checkpoint-3', 'optimizer.safetensors'))) assert.ok(t.data.every((v) => v === 0), `optimizer state ${name} untouched`);
});

test.run();
