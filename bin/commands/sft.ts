// `juice sft --model DIR --data FILE --out DIR`: supervised fine-tuning (train/sft.ts) on the shared training loop,
// with every training option of bin/training_options.ts (also from a JSON file, --config).
import { RunConfigError } from '../../train/run_config.ts';
import { runSft } from '../../train/sft.ts';
import { defineCommand, UsageError } from '../options.ts';
import { checkTrainingOptions, TRAINING_OPTIONS, withConfigFile } from '../training_options.ts';

export const sft = withConfigFile(defineCommand({
  name: 'sft',
  summary: 'supervised fine-tuning on demonstrations (full or LoRA): metrics.jsonl, plots, checkpoints that transformers loads, bit-exact --resume, an audit of every phase',
  options: TRAINING_OPTIONS,
  async run(o) {
    checkTrainingOptions(o);
    try {
      const result = await runSft(o);
      console.log(`\naudit (${o.out}/ledger.json, workloads.json; juice audit ${o.out}):\n\n${result.audit}\n`);
      const loss = result.firstLoss !== null && result.lastLoss !== null ? `; loss ${result.firstLoss.toFixed(4)} -> ${result.lastLoss.toFixed(4)}` : '';
      const evalText = result.lastEval ? `; ${Object.entries(result.lastEval).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}` : '';
      console.log(`${result.exitCode === 0 ? 'done' : 'stopped'} at step ${result.step} in ${result.seconds.toFixed(1)} s (${Math.round(result.tokensPerSecond)} tokens/s)${loss}${evalText}; last checkpoint ${result.lastCheckpoint ?? 'none'}`);
      return result.exitCode;
    } catch (e) {
      if (e instanceof RunConfigError) throw new UsageError(e.message);
      throw e;
    }
  },
}), TRAINING_OPTIONS);
