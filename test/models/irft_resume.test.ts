// `juice irft` as a child process on a tiny byte-level GPT-NeoX with LoRA: 2 stages (a merge and a fresh adapter
// between them), killed with SIGKILL inside a step of stage 2 and resumed from the last checkpoint (mid-stage: the
// stage's saved generations, no regeneration; the stage-1 adapter merged again into the base): the final adapter,
// merged adapters and optimizer state are byte-identical to an uninterrupted run, and so are the losses.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeAdditionData, writeByteModel } from '../support/byte_model.ts';
import { juiceRun, killedInStep, trainLosses } from '../support/juice_child.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-irft-resume-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const model = writeByteModel(path.join(tmp, 'model'));
const data = writeAdditionData(path.join(tmp, 'data.jsonl'), 8);

const STEPS = 8; // 2 stages of ceil(2 epochs · 4 prompts / 2 pairs) = 4 steps
const common = ['--model', model, '--data', data, '--stages', '2', '--epochs-per-stage', '2', '--batch', '2', '--max-new-tokens', '10',
  '--max-length', '64', '--max-prompt-length', '40', '--save-steps', '1', '--log-steps', '1', '--lr', '2e-3', '--lora-r', '4',
  '--lora-targets', 'query_key_value,dense', '--temperature', '0.8', '--seed', '3'];

const file = (dir: string, name: string) => fs.readFileSync(path.join(dir, `checkpoint-${STEPS}`, name));

test('IRFT with LoRA killed (SIGKILL) mid stage 2 and resumed ends byte-identical to an uninterrupted run', async () => {
  const whole = path.join(tmp, 'whole'), cut = path.join(tmp, 'cut');
  const a = juiceRun('irft', [...common, '--out', whole]);
  assert.is((await a.exited).code, 0, a.output());

  await killedInStep('irft', [...common, '--out', cut], 7);
  assert.ok(fs.existsSync(path.join(cut, 'checkpoint-6')) && !fs.existsSync(path.join(cut, `checkpoint-${STEPS}`)));

  const c = juiceRun('irft', [...common, '--out', cut, '--resume']);
  assert.is((await c.exited).code, 0, c.output());
  assert.ok(c.output().includes('resumed from') && !c.output().includes('stage 2/2: generated'), `the resumed run must not generate stage 2 again:\n${c.output()}`);
  for (const name of ['adapter_model.safetensors', 'optimizer.safetensors', 'irft_merged_adapters.safetensors', 'irft_generations.jsonl']) {
    assert.ok(file(whole, name).equals(file(cut, name)), `${name} differs after the resume`);
  }
  assert.equal(trainLosses(cut), trainLosses(whole));
});

test.run();
