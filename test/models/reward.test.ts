// The reward model (trunk + score head read at the last non-padding token) and the pairwise loss: the
// transformers fixture, transformers' read position, right padding, and the loss against float64.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { backward, noGrad } from '../../engine/autodiff.ts';
import { SafetensorsFile } from '../../engine/safetensors.ts';
import { tidyAsync } from '../../engine/tensor.ts';
import { lastTokenIndices, loadRewardModel } from '../../models/reward.ts';
import { preferenceLoss } from '../../train/objectives/preference.ts';
import { verifyFolder } from '../../train/verify.ts';
import { assertClose, download, initGpu, upload } from '../support/util.ts';

const REWARD = fileURLToPath(new URL('../fixtures/hf/reward/', import.meta.url));

test('reward fixture: rewards, pairwise loss, every gradient (juice verify)', async () => {
  await initGpu();
  const report = await verifyFolder(REWARD);
  assert.is(report.kind, 'reward');
  const names = report.checks.map((c) => c.name);
  for (const n of ['reward_demo', 'reward_gen', 'loss', 'grad.score.weight', 'grad.gpt_neox.embed_in.weight']) assert.ok(names.includes(n), `no check of ${n}`);
  for (const c of report.checks) assert.ok(c.pass, `reward ${c.name}: relative error ${c.relErr} > ${c.tol}`);
});

test('read position: the rightmost token that is not padding (transformers 5)', () => {
  const pad = 0;
  const rows = [[5, 6, 0, 0], [0, 0, 5, 6], [5, 0, 6, 0], [0, 0, 0, 0], [0, 7, 0, 0], [1, 2, 3, 4]];
  assert.equal(Array.from(lastTokenIndices(Int32Array.from(rows.flat()), 4, pad)), [1, 3, 2, 0, 1, 3]);
  // Without a pad id every row is read at its last position, padding or not.
  assert.equal(Array.from(lastTokenIndices(Int32Array.from(rows.flat()), 4, null)), [3, 3, 3, 3, 3, 3]);
});

test('right padding leaves every reward unchanged', async () => {
  await initGpu();
  const model = loadRewardModel(REWARD);
  const pad = model.config.padTokenId!;
  const ref = SafetensorsFile.open(`${REWARD}expected.safetensors`);
  const ids = ref.read('demo_ids') as Int32Array;
  const [B, T] = ref.info('demo_ids').shape;
  ref.close();
  assert.not.ok(ids.includes(pad), 'the fixture rows hold no pad token');
  // Row b keeps its first T - b tokens and gets 3 + b pad tokens: another read position per row.
  const padded = new Int32Array(B * (T + 3)).fill(pad);
  for (let b = 0; b < B; b++) padded.set(ids.subarray(b * T, (b + 1) * T - b), b * (T + 3));
  const unpadded = await Promise.all(Array.from({ length: B }, (_, b) =>
    tidyAsync(async () => (await download(noGrad(() => model.forward(ids.slice(b * T, (b + 1) * T - b), T - b))))[0])));
  await tidyAsync(async () => assertClose(await download(noGrad(() => model.forward(padded, T + 3))), unpadded, 1e-6, 'padded rewards'));
  model.dispose();
});

test('preferenceLoss: mean -log σ(chosen - rejected) and its gradient against float64, margins up to ±40', async () => {
  await initGpu();
  const chosen = [0.3, -2, 40, -40, 1e-3], rejected = [0.1, 1.5, 0, 0, 0];
  const B = chosen.length;
  const softplus = (z: number) => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z))); // log(1 + e^z)
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  const margins = chosen.map((c, b) => c - rejected[b]);
  const loss = margins.reduce((s, m) => s + softplus(-m), 0) / B;
  // d loss / d chosen = -σ(-margin) / B, and the opposite for rejected.
  const dChosen = margins.map((m) => -sigmoid(-m) / B);
  await tidyAsync(async () => {
    const rewards = upload([...chosen, ...rejected], [2 * B], true);
    const l = preferenceLoss(rewards);
    backward(l);
    assertClose([await l.item()], [loss], 1e-5, 'loss');
    assertClose(await download(rewards.grad!), [...dChosen, ...dChosen.map((d) => -d)], 1e-5, 'gradient');
    rewards.grad!.dispose();
  });
});

test.run();
