// `juice merge-lora`: a base model folder and a PEFT LoRA adapter folder become one merged model folder
// (W <- W + s·B·A on the GPU) that `juice generate` and transformers load without PEFT.
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { initGpu } from '../../engine/gpu.ts';
import { mergeLoraFolder } from '../../models/peft.ts';
import { choice, defineCommand, path, string, UsageError } from '../options.ts';

/** The output folder must be new or empty, inside an existing folder, and neither input folder. */
function checkOutput(out: string, inputs: Record<string, string>): void {
  const target = resolve(out);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new UsageError(`--out: '${out}' exists and is not a directory`);
    if (readdirSync(target).length > 0) throw new UsageError(`--out: '${out}' is not empty; give a new or empty folder`);
    for (const [flag, dir] of Object.entries(inputs)) if (realpathSync(target) === realpathSync(dir)) throw new UsageError(`--out: '${out}' is the ${flag} folder`);
  } else if (!existsSync(dirname(target)) || !statSync(dirname(target)).isDirectory()) {
    throw new UsageError(`--out: cannot create '${out}': no such folder '${dirname(target)}'`);
  }
}

export const mergeLora = defineCommand({
  name: 'merge-lora',
  summary: 'merge a PEFT LoRA adapter into its base model: writes a model folder (config.json, model.safetensors, generation and tokenizer files) that generate and transformers load',
  options: {
    model: path({ is: 'dir', required: true, help: 'the base model folder: config.json and its weights' }),
    adapter: path({ is: 'dir', required: true, help: 'the PEFT adapter folder: adapter_config.json and adapter_model.safetensors' }),
    out: string({ required: true, help: 'the merged model folder to write (new or empty)', metavar: 'DIR' }),
    dtype: choice({ choices: ['f32', 'base'], default: 'f32', help: 'dtype of the merged weights: f32, or each tensor in the base file\'s dtype (merged in f32, rounded to nearest even)' }),
  },
  async run(o) {
    checkOutput(o.out, { '--model': o.model, '--adapter': o.adapter });
    await initGpu();
    const report = await mergeLoraFolder(o.model, o.adapter, o.out, { dtype: o.dtype });
    const dtypes = Object.entries(report.dtypes).map(([d, n]) => `${n} ${d}`).join(', ');
    console.log(`merged ${report.modules} adapted modules into ${o.out}: ${report.tensors} tensors (${dtypes}); wrote ${report.files.join(', ')}`);
    return 0;
  },
});
