// `juice irft --model DIR --data FILE --out DIR --stages T --epochs-per-stage K --beta 0.1`: implicit reward
// fine-tuning (train/irft.ts) on the shared loop, with every training option of `juice sft` and IRFT's own: the
// stages, the loss, and the generation of each stage's responses.
import { IRFT_LOSS_TYPES } from '../../train/objectives/irft.ts';
import { runIrft, type IrftOptions } from '../../train/irft.ts';
import { HH_STOP_STRINGS } from '../../train/reward_learning.ts';
import { RunConfigError } from '../../train/run_config.ts';
import { boolean, choice, defineCommand, integer, number, string, UsageError } from '../options.ts';
import { checkTrainingOptions, TRAINING_OPTIONS, withConfigFile } from '../training_options.ts';

/** Generation options, shared with `juice rft` (which samples by default). */
export function generationOptions(defaultTemperature: number) {
  return {
    'max-new-tokens': integer({ min: 1, max: 1 << 16, default: 128, help: 'new tokens per generated response at most' }),
    temperature: number({ min: 0, max: 100, default: defaultTemperature, help: '0: greedy; > 0: sample from softmax(logits / temperature)' }),
    'top-p': number({ min: 0, max: 1, minExclusive: true, default: 1, help: 'nucleus sampling (with --temperature > 0)' }),
    'top-k': integer({ min: 0, max: 1 << 20, default: 0, help: 'keep the k most likely tokens (with --temperature > 0); 0: all' }),
    stop: string({ multiple: true, metavar: 'TEXT', help: `a generated response ends after this text, which is cut off (EOS appended); default ${HH_STOP_STRINGS.map((s) => JSON.stringify(s)).join(' and ')} (HH turns)` }),
    'no-stop': boolean({ help: 'no stop strings: responses end at EOS or --max-new-tokens only' }),
    'generation-batch': integer({ min: 1, max: 4096, default: 64, help: 'rows generated together (the KV cache\'s rows; waiting prompts join as rows finish)' }),
  };
}

const IRFT_OPTIONS = {
  ...TRAINING_OPTIONS,
  stages: integer({ min: 1, max: 1e6, default: 2, help: 'IRFT stages T: the prompts are split into T chunks, one per stage' }),
  'epochs-per-stage': integer({ min: 1, max: 1e6, default: 1, help: 'epochs K over each stage\'s pairs' }),
  beta: number({ min: 0, max: 1e6, minExclusive: true, default: 0.1, help: 'beta of the implicit reward beta·log(pi / pi_ref)' }),
  loss: choice({ choices: IRFT_LOSS_TYPES, default: 'sigmoid', help: 'the pairwise loss on the margin: -log sigmoid(m) (SPIN, DPO), relu(1 - m) (SLiC), -m' }),
  ...generationOptions(0),
};

export function checkGenerationOptions(o: { temperature: number; 'top-p': number; 'top-k': number; stop: string[]; 'no-stop': boolean }): void {
  if (o.temperature === 0 && (o['top-p'] !== 1 || o['top-k'] !== 0)) throw new UsageError('--top-p and --top-k shape sampling: they need --temperature > 0');
  if (o['no-stop'] && o.stop.length > 0) throw new UsageError('--no-stop and --stop contradict each other');
  if (o.stop.some((s) => s === '')) throw new UsageError('--stop: a stop string must not be empty');
}

export const irft = withConfigFile(defineCommand({
  name: 'irft',
  summary: 'implicit reward fine-tuning from demonstrations (IRFT / SPIN stages; full or LoRA), with an audit of every phase',
  options: IRFT_OPTIONS,
  async run(o) {
    checkTrainingOptions(o);
    checkGenerationOptions(o);
    if (o['max-steps'] !== undefined) throw new UsageError('--max-steps: IRFT\'s steps come from --stages, --epochs-per-stage, --batch and --grad-accum');
    try {
      const result = await runIrft({ ...o, stop: o.stop.length > 0 ? o.stop : HH_STOP_STRINGS } as IrftOptions);
      console.log(`\naudit (${o.out}/ledger.json, workloads.json; juice audit ${o.out}):\n\n${result.audit}\n`);
      const loss = result.firstLoss !== null && result.lastLoss !== null ? `; loss ${result.firstLoss.toFixed(4)} -> ${result.lastLoss.toFixed(4)}` : '';
      console.log(`${result.exitCode === 0 ? 'done' : 'stopped'} at step ${result.step} in ${result.seconds.toFixed(1)} s (${Math.round(result.tokensPerSecond)} training tokens/s)${loss}; last checkpoint ${result.lastCheckpoint ?? 'none'}`);
      return result.exitCode;
    } catch (e) {
      if (e instanceof RunConfigError) throw new UsageError(e.message);
      throw e;
    }
  },
}), IRFT_OPTIONS);
