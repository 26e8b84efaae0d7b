// `juice inspect DIR`: architecture, parameter count, memory plan and FLOPs per token of a Hugging Face model
// folder; exit 1 when the folder's weights do not match its config.
import { describeModel, formatSummary } from '../../models/inspect.ts';
import { boolean, defineCommand, integer, path } from '../options.ts';

export const inspect = defineCommand({
  name: 'inspect',
  summary: 'architecture, parameter count, memory plan and FLOPs per token of a Hugging Face model folder; exit 1 when its weights are rejected',
  argument: path({ is: 'dir', required: true, help: 'the model folder: config.json; the weights are optional, checked against the config when present' }),
  options: {
    'seq-len': integer({ min: 1, max: 2 ** 24, help: 'sequence length of the attention FLOPs; default max_position_embeddings' }),
    json: boolean({ help: 'print the summary as JSON' }),
    'lora-r': integer({ min: 1, max: 65536, help: 'also plan LoRA training at rank R (PEFT\'s default target modules)', metavar: 'R' }),
  },
  async run(o, dir) {
    const summary = describeModel(dir, { sequenceLength: o['seq-len'], loraR: o['lora-r'] });
    console.log(o.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
    return summary.weights?.problem ? 1 : 0;
  },
});
