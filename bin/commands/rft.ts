// `juice rft --model DIR --data FILE --out DIR [--reward-model DIR]`: reward fine-tuning from demonstrations
// (train/rft.ts): a reward model learnt against the policy's samples, the policy trained against it with RLOO and
// a KL penalty to the initial model; every training option of `juice sft` and RFT's own.
import { runRft, type RftOptions } from '../../train/rft.ts';
import { HH_STOP_STRINGS } from '../../train/reward_learning.ts';
import { RunConfigError } from '../../train/run_config.ts';
import { defineCommand, integer, number, path, UsageError } from '../options.ts';
import { checkTrainingOptions, TRAINING_OPTIONS, withConfigFile } from '../training_options.ts';
import { checkGenerationOptions, generationOptions } from './irft.ts';

const RFT_OPTIONS = {
  ...TRAINING_OPTIONS,
  'reward-model': path({ is: 'dir', help: 'a ...ForSequenceClassification folder (one label) to start the reward model from; default: the policy\'s trunk with a fresh score head' }),
  'samples-per-prompt': integer({ min: 2, max: 1024, default: 2, help: 'sampled responses per prompt (RLOO\'s k; the baseline is the other k - 1)' }),
  'prompts-per-iteration': integer({ min: 1, max: 1 << 20, default: 8, help: 'prompts of one outer iteration (rollout, reward update, policy steps); --epochs passes over the prompts set the iterations' }),
  'policy-steps': integer({ min: 1, max: 1e6, default: 1, help: 'policy optimizer steps per iteration, on its samples' }),
  'reward-steps': integer({ min: 1, max: 1e6, default: 1, help: 'reward-model optimizer steps per iteration, on every (demonstration, sample) pair' }),
  'reward-lr': number({ min: 0, max: 10, default: 1e-4, help: 'the reward model\'s learning rate (AdamW, constant)' }),
  'kl-coef': number({ min: 0, max: 1e6, default: 0.05, help: 'β_KL of R = r - β_KL·(logp_π - logp_ref), the reference being the initial model' }),
  ...generationOptions(1),
};

export const rft = withConfigFile(defineCommand({
  name: 'rft',
  summary: 'reward fine-tuning from demonstrations: a reward model against the policy\'s samples, RLOO against it (full or LoRA), with an audit',
  options: RFT_OPTIONS,
  async run(o) {
    checkTrainingOptions(o);
    checkGenerationOptions(o);
    if (o['max-steps'] !== undefined) throw new UsageError('--max-steps: RFT\'s steps come from --epochs, --prompts-per-iteration and --policy-steps');
    if (o.temperature === 0) throw new UsageError('--temperature 0 makes the k samples of a prompt identical: RLOO\'s advantages would all be 0');
    try {
      const result = await runRft({ ...o, stop: o.stop.length > 0 ? o.stop : HH_STOP_STRINGS } as RftOptions);
      console.log(`\naudit (${o.out}/ledger.json, workloads.json; juice audit ${o.out}):\n\n${result.audit}\n`);
      const loss = result.firstLoss !== null && result.lastLoss !== null ? `; policy loss ${result.firstLoss.toFixed(4)} -> ${result.lastLoss.toFixed(4)}` : '';
      console.log(`${result.exitCode === 0 ? 'done' : 'stopped'} at step ${result.step} in ${result.seconds.toFixed(1)} s (${Math.round(result.tokensPerSecond)} training tokens/s)${loss}; last checkpoint ${result.lastCheckpoint ?? 'none'}; reward model ${o.out}/reward_model`);
      return result.exitCode;
    } catch (e) {
      if (e instanceof RunConfigError) throw new UsageError(e.message);
      throw e;
    }
  },
}), RFT_OPTIONS);
