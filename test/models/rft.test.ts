// RFT: the PyTorch fixture (the reward model's Bradley-Terry step, then RLOO steps against a fixed reference), RLOO
// advantages and returns by hand, the micro-batch shares of both losses, and reward model checkpoints that
// transformers reads as ...ForSequenceClassification and loadRewardModel loads back.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backward, noGrad } from '../../engine/autodiff.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { tidy, tidyAsync } from '../../engine/tensor.ts';
import { loadCausalLM } from '../../models/causal_lm.ts';
import { parseConfig } from '../../models/config.ts';
import { initParameters } from '../../models/init.ts';
import { loadRewardModel, RewardModel, saveRewardModel } from '../../models/reward.ts';
import { rewardMicroLoss, rftPolicyMicroLoss, rlooAdvantages, rlooReturns, sampleLogprobs, type SampleBatch } from '../../train/objectives/rft.ts';
import { verifyFolder } from '../../train/verify.ts';
import { assertClose, initGpu } from '../support/util.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const DIR = path.join(FIXTURES, 'train', 'rft_step');
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-rft-'));
test.after(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

test('rft_step fixture: reward step, then RLOO steps: rewards, KL, R, A, losses, gradients, parameters (juice verify)', async () => {
  await initGpu();
  const report = await verifyFolder(DIR);
  assert.is(report.kind, 'rft_step');
  const names = report.checks.map((c) => c.name.split(' ')[0]); // without the notes
  for (const n of ['reward_loss', 'reward_grad.score.weight', 'reward_after.score.weight', 'reward_samples_after', 'policy_step2.kl', 'policy_step2.A', 'policy_step2.loss', 'policy_step1.grad.embed_out.weight', 'policy_step2.after.embed_out.weight'])
    assert.ok(names.includes(n), `no check of ${n}`);
  const failed = report.checks.filter((c) => !c.pass);
  assert.equal(failed, [], failed.map((c) => `${c.name}: ${c.relErr.toExponential(3)} > ${c.tol}`).join('; '));
  assert.ok(report.pass);
  // Rule A: the key-bias elements of both models (4 heads × 6 and × 4 non-rotary dims) and all 32 elements of the
  // reward model's final_layer_norm.bias (the Bradley-Terry loss ignores a common reward shift); Rule B at the
  // policy's first step (policy_step1.grad): 2 elements; none at the reward model's (reward_grad).
  const exempt = report.exemptions.map((e) => `${e.model} ${e.rule} ${e.parameter} ${e.rule === 'adam-noise' ? JSON.stringify(e.elements) : e.elements.length}`);
  console.log(`rft_step: ${exempt.length} exempted sets\n  ${exempt.join('\n  ')}`);
  assert.equal(exempt, [
    'reward_model zero-gradient gpt_neox.layers.0.attention.query_key_value.bias 24',
    'reward_model zero-gradient gpt_neox.layers.1.attention.query_key_value.bias 24',
    'reward_model zero-gradient gpt_neox.final_layer_norm.bias 32',
    'policy zero-gradient gpt_neox.layers.0.attention.query_key_value.bias 16',
    'policy zero-gradient gpt_neox.layers.1.attention.query_key_value.bias 16',
    'policy adam-noise gpt_neox.layers.0.attention.query_key_value.weight [184]',
    'policy adam-noise gpt_neox.layers.1.attention.query_key_value.weight [1998]',
  ]);
  // Nothing else is exempt: only those tensors are checked in two parts after each step,
  const split = (at: string) => [...new Set(report.checks.filter((c) => c.name.startsWith(`${at}.`) && (c.tol === 1 || c.name.includes('(without the'))).map((c) => c.name.split(' ')[0].slice(at.length + 1)))].sort();
  const keys = ['gpt_neox.layers.0.attention.query_key_value.bias', 'gpt_neox.layers.1.attention.query_key_value.bias'];
  assert.equal(split('reward_after'), [...keys, 'gpt_neox.final_layer_norm.bias'].sort());
  for (const at of ['policy_step1.after', 'policy_step2.after']) assert.equal(split(at), [...keys, 'gpt_neox.layers.0.attention.query_key_value.weight', 'gpt_neox.layers.1.attention.query_key_value.weight'].sort(), at);
  for (const c of report.checks.filter((x) => /^(reward_after|policy_step\d\.after|reward_grad|policy_step\d\.grad)\./.test(x.name))) assert.ok(c.tol === 1 || c.tol === 1e-4, c.name);
  // the rewards after the reward step and R are compared modulo one common shift at 1e-5 (R at step 2 at 1e-4: the
  // policy's Rule B elements moved), and their absolute comparisons are informational, and only those;
  const shifted = report.checks.filter((c) => c.name.includes('(modulo the common reward shift'));
  assert.equal(shifted.map((c) => c.name.split(' ')[0]), ['reward_demo_after', 'reward_gen_after', 'reward_samples_after', 'policy_step1.R', 'policy_step2.R']);
  assert.equal(shifted.map((c) => c.tol), [1e-5, 1e-5, 1e-5, 1e-5, 1e-4]);
  assert.is(new Set(shifted.map((c) => /shift (\S+)\)/.exec(c.name)![1])).size, 1, 'one shift for all');
  const informational = report.checks.filter((c) => c.informational);
  assert.equal(informational.map((c) => c.name), ['reward_demo_after', 'reward_gen_after', 'reward_samples_after', 'policy_step1.R', 'policy_step2.R'].map((n) => `${n} (absolute, informational)`));
  for (const c of informational) assert.ok(c.pass && c.note, c.name);
  // the values at 1e-4 are those of policy step 2 (after its Rule B elements moved); everything else at 1e-5.
  const downstream = report.checks.filter((c) => c.name.includes('(gradient tolerance:')).map((c) => c.name.split(' ')[0]);
  assert.equal(downstream, ['policy_step2.logp', 'policy_step2.kl', 'policy_step2.R', 'policy_step2.A', 'policy_step2.loss']);
  for (const c of report.checks.filter((x) => /^(reward_(demo|gen|samples)_|reward_loss|policy_step\d\.(logp|ref_logp|kl|R|A|loss))/.test(x.name) && !x.informational))
    assert.is(c.tol, c.name.includes('(gradient tolerance:') ? 1e-4 : 1e-5, c.name);
});

test('rlooAdvantages: the leave-one-out baseline by hand, k = 2 and k = 3; refusals', () => {
  // k = 2: A = R_i - R_other.
  assertClose(rlooAdvantages([1, 3, -2, 0.5], 2), [-2, 2, -2.5, 2.5], 1e-12, 'k = 2');
  // k = 3, prompt 0: [1, 2, 6] -> 1 - 4, 2 - 3.5, 6 - 1.5; prompt 1: [0, 0, 3] -> -1.5, -1.5, 3.
  assertClose(rlooAdvantages([1, 2, 6, 0, 0, 3], 3), [-3, -1.5, 4.5, -1.5, -1.5, 3], 1e-12, 'k = 3');
  // Each prompt's advantages sum to 0 (times k/(k-1) of the centred returns).
  const A = rlooAdvantages([0.3, -1.2, 2.2], 3);
  assertClose([A[0] + A[1] + A[2]], [0], 1e-12, 'sum');
  assert.throws(() => rlooAdvantages([1, 2, 3], 2), /whole groups/);
  assert.throws(() => rlooAdvantages([1, 2], 1), /k 1/);
});

test('rlooReturns: KL = logp - ref, R = reward - beta·KL', () => {
  const { kl, R } = rlooReturns([1, -1], [-10, -12], [-11, -11], 0.05);
  assertClose(kl, [1, -1], 1e-12, 'KL');
  assertClose(R, [0.95, -0.95], 1e-12, 'R');
});

test('micro-batch shares: two halves of the reward and RLOO losses sum to the full batch', async () => {
  await initGpu();
  const inputs = SafetensorsFile.open(path.join(DIR, 'inputs.safetensors'));
  const demo = inputs.read('pair_demo_ids') as Int32Array, gen = inputs.read('pair_gen_ids') as Int32Array, T = inputs.info('pair_demo_ids').shape[1];
  const samples: SampleBatch = { ids: inputs.read('sample_ids') as Int32Array, mask: inputs.read('sample_mask') as Float32Array, T: inputs.info('sample_ids').shape[1] };
  inputs.close();
  const rm = loadRewardModel(path.join(DIR, 'reward_model'), { frozen: true });
  const policy = loadCausalLM(path.join(DIR, 'policy'), { frozen: true });
  try {
    const value = (f: () => ReturnType<typeof rewardMicroLoss>) => tidyAsync(async () => noGrad(f).item());
    const full = await value(() => rewardMicroLoss(rm, demo, gen, T, 3));
    const parts = await value(() => rewardMicroLoss(rm, demo.slice(0, T), gen.slice(0, T), T, 3)) + await value(() => rewardMicroLoss(rm, demo.slice(T), gen.slice(T), T, 3));
    assertClose([parts], [full], 1e-6, 'reward loss');
    const A = [0.7, -0.7, 0.2, -0.2, 1.5, -1.5];
    const logp = await sampleLogprobs(policy, samples);
    const hand = -A.reduce((s, a, i) => s + a * logp[i], 0) / 6;
    const L = samples.T;
    const half = (lo: number, hi: number) => value(() => rftPolicyMicroLoss(policy, { ids: samples.ids.slice(lo * L, hi * L), mask: samples.mask.slice(lo * L, hi * L), T: L }, A.slice(lo, hi), 6));
    assertClose([await value(() => rftPolicyMicroLoss(policy, samples, A, 6))], [hand], 1e-6, 'RLOO loss = -mean A·logp');
    assertClose([await half(0, 4) + await half(4, 6)], [hand], 1e-6, 'RLOO loss in two micro-batches');
  } finally {
    rm.dispose();
    policy.dispose();
  }
});

test('saveRewardModel: a ...ForSequenceClassification folder (one label, pad id) that loads back to the same rewards', async () => {
  await initGpu();
  const ids = Int32Array.from([5, 9, 33, 2, 0, 0, 7, 7, 1, 4, 8, 3]); // [2, 6], right-padded with 0
  const neox = loadRewardModel(path.join(DIR, 'reward_model'));
  const mistralJson = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'hf', 'mistral', 'config.json'), 'utf8'));
  Object.assign(mistralJson, { architectures: ['MistralForSequenceClassification'], num_labels: 1, pad_token_id: 0 });
  const mistralConfig = parseConfig(mistralJson, 'mistral config');
  const mistral = new RewardModel(mistralConfig, initParameters(mistralConfig, 5));
  tidy(() => backward(rewardMicroLoss(neox, ids.slice(0, 6), ids.slice(6), 6, 1))); // gradients do not travel
  for (const [model, arch] of [[neox, 'GPTNeoXForSequenceClassification'], [mistral, 'MistralForSequenceClassification']] as const) {
    const dir = path.join(tmpDir, arch);
    await saveRewardModel(model, dir);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(config.architectures, [arch]);
    assert.is(config.num_labels, 1);
    assert.is(config.pad_token_id, 0);
    assert.equal(config.id2label, { 0: 'LABEL_0' });
    assert.equal(config.label2id, { LABEL_0: 0 });
    const file = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    assert.equal(file.names().sort(), model.params.specs.map((s) => s.name).sort());
    assert.equal(file.info('score.weight').shape, [1, model.config.hidden]);
    file.close();
    const loaded = loadRewardModel(dir, { frozen: true });
    assert.equal({ ...loaded.config }, { ...model.config, padTokenId: 0 });
    const rewards = (m: RewardModel) => tidyAsync(async () => Array.from(await noGrad(() => m.forward(ids, 6)).toArray()));
    assert.equal(await rewards(loaded), await rewards(model), `${arch}: the same rewards`);
    loaded.dispose();
  }
  neox.dispose();
  mistral.dispose();
});

test.run();
