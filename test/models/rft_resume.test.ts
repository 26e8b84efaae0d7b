// `juice rft` as a child process on a tiny byte-level GPT-NeoX: 4 outer iterations (rollout, reward-model update,
// a policy step each), killed with SIGKILL inside step 3 and resumed from checkpoint-2: the policy, its optimizer
// state, the reward model and the reward model's optimizer state are byte-identical to an uninterrupted run, and so
// are the losses.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REWARD_OPTIMIZER_FILE, REWARD_WEIGHTS_FILE } from '../../train/rft.ts';
import { writeAdditionData, writeByteModel } from '../support/byte_model.ts';
import { juiceRun, killedInStep, trainLosses } from '../support/juice_child.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-rft-resume-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const model = writeByteModel(path.join(tmp, 'model'));
const data = writeAdditionData(path.join(tmp, 'data.jsonl'), 8);

const STEPS = 4; // 8 prompts, 2 an iteration, one epoch: 4 iterations of one policy step
const common = ['--model', model, '--data', data, '--prompts-per-iteration', '2', '--epochs', '1', '--batch', '2', '--max-new-tokens', '8',
  '--max-length', '64', '--max-prompt-length', '40', '--save-steps', '1', '--log-steps', '1', '--lr', '2e-3',
  '--temperature', '0.8', '--seed', '3'];

const file = (dir: string, name: string) => fs.readFileSync(path.join(dir, `checkpoint-${STEPS}`, name));

test('RFT killed (SIGKILL) in step 3 and resumed ends byte-identical to an uninterrupted run, the reward model included', async () => {
  const whole = path.join(tmp, 'whole'), cut = path.join(tmp, 'cut');
  const a = juiceRun('rft', [...common, '--out', whole]);
  assert.is((await a.exited).code, 0, a.output());

  await killedInStep('rft', [...common, '--out', cut], 3);
  assert.ok(fs.existsSync(path.join(cut, 'checkpoint-2')) && !fs.existsSync(path.join(cut, 'checkpoint-3')));

  const c = juiceRun('rft', [...common, '--out', cut, '--resume']);
  assert.is((await c.exited).code, 0, c.output());
  assert.ok(c.output().includes('resumed from') && c.output().includes('checkpoint-2'), c.output());
  for (const name of ['model.safetensors', 'optimizer.safetensors', REWARD_WEIGHTS_FILE, REWARD_OPTIMIZER_FILE])
    assert.ok(file(whole, name).equals(file(cut, name)), `${name} differs after the resume`);
  assert.ok(fs.readFileSync(path.join(whole, 'reward_model', 'model.safetensors')).equals(fs.readFileSync(path.join(cut, 'reward_model', 'model.safetensors'))), 'the final reward_model/ differs');
  assert.equal(trainLosses(cut), trainLosses(whole));
});

test.run();
