// Gradient checkpointing (engine/autodiff.ts checkpoint, --gradient-checkpointing): the same loss and the same
// parameter gradients with and without it on tiny GPT-NeoX, Mistral and reward models, full and LoRA with dropout
// (the counter moved on between forward and backward, so the replay must draw the forward's masks); checkpoint()
// on a leaf input; a lower pool peak over forward + backward at a shape of several layers; `juice sft
// --gradient-checkpointing` parsed, recorded in trainer_state.json and changing nothing in the trained adapter;
// irft's and rft's policy and reward model replaying their layers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { autocast, autocastF16, backward, checkpoint, tapeLength, zeroGrad } from '../../engine/autodiff.ts';
import { ledger, type LedgerEntry } from '../../engine/ledger.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor, numelOf, tidy } from '../../engine/tensor.ts';
import { crossEntropy } from '../../engine/ops/cross_entropy.ts';
import { mul, sumLastDim } from '../../engine/ops/elementwise.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { CausalLM } from '../../models/causal_lm.ts';
import { loadConfig, type ModelConfig } from '../../models/config.ts';
import { initParameters } from '../../models/init.ts';
import { LORA_TARGET_MODULES } from '../../models/lora.ts';
import { adapterSpecs, attachLora, loraConfig } from '../../models/peft.ts';
import { RewardModel } from '../../models/reward.ts';
import { sft } from '../../bin/commands/sft.ts';
import { irft } from '../../bin/commands/irft.ts';
import { rft } from '../../bin/commands/rft.ts';
import { LEDGER_FILE } from '../../train/audit.ts';
import { readMetrics } from '../../train/metrics.ts';
import { writeByteModel } from '../support/byte_model.ts';
import { fixture } from '../support/paths.ts';
import { initGpu, randInt, randn, relErr, upload } from '../support/util.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-checkpointing-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const modelDir = writeByteModel(path.join(tmp, 'model'));
const data = path.join(tmp, 'data.jsonl');
fs.writeFileSync(data, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `what is ${i} plus 2?`, response: ` ${i + 2}.` })).join('\n') + '\n');

/** A fixture's config (hidden 64, 4 heads) with `layers` layers. */
const configOf = (name: string, layers: number): ModelConfig => ({ ...loadConfig(fixture(`hf/${name}`)), layers });

/** A random model; with `dropout`, adapters on every target module (random non-zero B) with that dropout, training. */
function model(config: ModelConfig, dropout?: number): CausalLM {
  const m = new CausalLM(config, initParameters(config, 3, 0.2));
  if (dropout === undefined) return m;
  const lora = loraConfig(config, { r: 4, alpha: 8, dropout, targetModules: [...LORA_TARGET_MODULES[config.modelType]] });
  attachLora(m, lora, new Map(adapterSpecs(config, lora).map((s, k) => [s.name, Float32Array.from(randn(numelOf(s.shape), 40 + k, 0.2))])));
  m.lora!.training = true;
  return m;
}

interface Pass { loss: number; grads: Map<string, Float32Array>; peakBytes: number; tapeNodes: number }

/**
 * One forward + backward on fixed ids, as TrainStep runs it (one tidy): the loss (next-token cross-entropy, or a
 * weighted sum of rewards), every parameter gradient, the pool's peak above what was live before, and the tape's
 * length after the forward. The dropout counter moves on between forward and backward: a replay that read it
 * then would draw other masks.
 */
async function pass(m: CausalLM | RewardModel, B: number, T: number): Promise<Pass> {
  const params = m.params;
  const ids = randInt(B * T, m.config.vocabSize, 11);
  pool.resetPeak();
  const before = pool.liveBytes;
  let tapeNodes = 0;
  const loss = tidy(() => {
    let l: Tensor;
    if (m instanceof CausalLM) {
      if (m.lora) m.lora.counter = 5;
      const logits = m.forward(Tensor.fromArray(ids, [B, T], 'i32'));
      l = crossEntropy(reshape(logits, [B * T, m.config.vocabSize]), Tensor.fromArray(randInt(B * T, m.config.vocabSize, 12), [B * T], 'i32'));
      if (m.lora) m.lora.counter = 6;
    } else {
      l = sumLastDim(mul(m.forward(ids, T), upload(randn(B, 13), [B])));
    }
    tapeNodes = tapeLength();
    backward(l);
    return l.keep();
  });
  const peakBytes = pool.peakBytes - before;
  const grads = new Map<string, Float32Array>();
  for (const e of params.entries()) grads.set(e.name, (await e.param.grad!.toArray()) as Float32Array);
  zeroGrad(params.entries().map((e) => e.param));
  const value = await loss.item();
  loss.dispose();
  return { loss: value, grads, peakBytes, tapeNodes };
}

function assertSame(plain: Pass, checkpointed: Pass, what: string): void {
  assert.is(checkpointed.loss, plain.loss, `${what}: loss`);
  assert.is(checkpointed.grads.size, plain.grads.size, `${what}: gradients`);
  for (const [name, g] of plain.grads) {
    const c = checkpointed.grads.get(name)!;
    assert.ok(g.some((v) => v !== 0), `${what}: ${name} has a zero gradient, which compares nothing`);
    assert.ok(relErr(c, g) <= 1e-6, `${what}: ${name} relative error ${relErr(c, g)}`);
    assert.ok(c.every((v, i) => v === g[i]), `${what}: ${name} not bit-identical (relative error ${relErr(c, g)})`);
  }
  assert.ok(checkpointed.tapeNodes < plain.tapeNodes, `${what}: tape of ${checkpointed.tapeNodes} nodes with checkpointing, ${plain.tapeNodes} without`);
}

for (const name of ['gpt_neox', 'mistral']) {
  for (const dropout of [undefined, 0.3]) {
    const what = `${name} ${dropout === undefined ? 'full' : `LoRA, dropout ${dropout}`}`;
    test(`${what}: the loss and every parameter gradient are bit-identical with and without checkpointing`, async () => {
      await initGpu();
      const m = model(configOf(name, 3), dropout);
      const plain = await pass(m, 2, 9);
      m.gradientCheckpointing = true;
      const checkpointed = await pass(m, 2, 9);
      assertSame(plain, checkpointed, what);
      if (m.lora) {
        m.lora.training = false;
        m.gradientCheckpointing = false;
        assert.is.not((await pass(m, 2, 9)).loss, plain.loss, `${what}: dropout changes the loss (else the masks compare nothing)`);
      }
      m.dispose();
    });
  }
}

test('reward model (GPT-NeoX trunk + score): the same rewards\' loss and gradients with checkpointing', async () => {
  await initGpu();
  const reward = new RewardModel({ ...configOf('gpt_neox', 3), head: 'score' }, initParameters({ ...configOf('gpt_neox', 3), head: 'score' }, 5, 0.2));
  const plain = await pass(reward, 3, 7);
  reward.gradientCheckpointing = true;
  assertSame(plain, await pass(reward, 3, 7), 'reward model');
  reward.dispose();
});

test('checkpoint(): the gradient of its input is returned, a leaf input\'s .grad accumulates, and nothing leaks', async () => {
  await initGpu();
  const w = upload(randn(8, 21), [8], true);
  const x = upload(randn(8, 22), [8], true);
  const f = (h: Tensor) => mul(mul(h, w), h); // x² w: dx = 2 x w, dw = x²
  const live = pool.liveBytes;
  for (let k = 0; k < 2; k++) tidy(() => backward(sumLastDim(checkpoint(f, x))));
  const [xs, ws] = [await x.toArray(), await w.toArray()];
  const [dx, dw] = [await x.grad!.toArray(), await w.grad!.toArray()];
  xs.forEach((v, i) => {
    assert.ok(Math.abs(dx[i] - 2 * 2 * v * ws[i]) <= 1e-5 * (1 + Math.abs(dx[i])), `dx[${i}] = ${dx[i]}, two backwards of 2 x w`);
    assert.ok(Math.abs(dw[i] - 2 * v * v) <= 1e-5 * (1 + Math.abs(dw[i])), `dw[${i}] = ${dw[i]}, two backwards of x²`);
  });
  zeroGrad([x, w]);
  assert.is(pool.liveBytes, live, 'live bytes after two checkpointed backwards');
  assert.is(tapeLength(), 0);
  x.dispose();
  w.dispose();
});

test('checkpoint(): the replay in the backward runs in the forward\'s autocast mode, outside autocast or in it', async () => {
  await initGpu();
  const x = upload(randn(4, 23), [4], true);
  for (const mixed of [false, true]) {
    const modes: boolean[] = [];
    const f = (h: Tensor) => { modes.push(autocastF16()); return mul(h, h); };
    const y = mixed ? autocast(() => checkpoint(f, x)) : checkpoint(f, x);
    tidy(() => backward(sumLastDim(y))); // outside autocast, as TrainStep runs the backward
    y.dispose();
    assert.equal(modes, [mixed, mixed], `forward and replay ${mixed ? 'inside' : 'outside'} autocast`);
  }
  zeroGrad([x]);
  x.dispose();
});

test('the pool\'s peak over forward + backward is lower with checkpointing (GPT-NeoX, 6 layers, B 4, T 64)', async () => {
  await initGpu();
  const m = model(configOf('gpt_neox', 6));
  const plain = await pass(m, 4, 64);
  m.gradientCheckpointing = true;
  const checkpointed = await pass(m, 4, 64);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  console.log(`peak above the parameters: ${mib(plain.peakBytes)} without checkpointing, ${mib(checkpointed.peakBytes)} with`);
  // Six layers' activations against one layer's (replayed) and six layer inputs: at most 0.6 of the peak.
  assert.ok(checkpointed.peakBytes < 0.6 * plain.peakBytes, `peak ${mib(checkpointed.peakBytes)} with checkpointing, ${mib(plain.peakBytes)} without`);
  m.dispose();
});

test('juice sft --gradient-checkpointing: parsed, in trainer_state.json, recomputes in the backward, the same adapter and losses', async () => {
  await initGpu();
  for (const command of [sft, irft, rft]) assert.match(command.help(), /--gradient-checkpointing +keep only each transformer layer's input/, command.name);
  const run = async (out: string, extra: string[]) => {
    ledger.reset();
    const code = await sft.main(['--model', modelDir, '--data', data, '--out', out, '--max-steps', '2', '--batch', '2', '--grad-accum', '2', '--lr', '1e-2',
      '--lora-r', '4', '--lora-dropout', '0.3', '--lora-targets', 'all-linear', '--max-length', '32', '--max-prompt-length', '16', '--log-steps', '1', ...extra]);
    assert.is(code, 0, `juice sft ${extra.join(' ')}`);
    const state = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint-2', 'trainer_state.json'), 'utf8'));
    return {
      flag: state.config['gradient-checkpointing'],
      recomputed: ledger.byPhase().some((r) => r.key === 'policy-backward-recompute' && r.flops > 0),
      losses: readMetrics(path.join(out, 'metrics.jsonl')).records.filter((r) => r.type === 'train').map((r) => r.loss),
      adapter: fs.readFileSync(path.join(out, 'checkpoint-2', 'adapter_model.safetensors')),
    };
  };
  const plain = await run(path.join(tmp, 'plain'), []);
  const checkpointed = await run(path.join(tmp, 'checkpointed'), ['--gradient-checkpointing']);
  assert.equal([plain.flag, plain.recomputed], [false, false]);
  assert.equal([checkpointed.flag, checkpointed.recomputed], [true, true]);
  assert.equal(checkpointed.losses, plain.losses);
  assert.ok(checkpointed.adapter.equals(plain.adapter), 'adapter_model.safetensors differs');
});

test('juice irft and juice rft --gradient-checkpointing: the policy and the reward model replay their layers in the backward', async () => {
  await initGpu();
  const common = ['--model', modelDir, '--data', data, '--batch', '2', '--max-new-tokens', '4', '--max-length', '32', '--max-prompt-length', '16',
    '--log-steps', '1', '--limit', '4', '--gradient-checkpointing'];
  const phases = (out: string) => {
    const saved = JSON.parse(fs.readFileSync(path.join(out, LEDGER_FILE), 'utf8')) as { entries: LedgerEntry[] };
    return [...new Set(saved.entries.filter((e) => e.flops > 0 && e.phase.endsWith('-recompute')).map((e) => e.phase))].sort();
  };
  const irftOut = path.join(tmp, 'irft');
  assert.is(await irft.main([...common, '--out', irftOut, '--stages', '1', '--epochs-per-stage', '1']), 0);
  assert.equal(phases(irftOut), ['policy-backward-recompute']);
  const rftOut = path.join(tmp, 'rft');
  assert.is(await rft.main([...common, '--out', rftOut, '--prompts-per-iteration', '2', '--epochs', '1']), 0);
  assert.equal(phases(rftOut), ['policy-backward-recompute', 'reward-backward-recompute']);
});

test.run();
