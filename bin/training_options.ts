// The training options (the values: train/run_config.ts), declared once for `juice sft` (and, to come, `juice irft` and `juice rft`, which spread
// TRAINING_OPTIONS into their own and add their objective's): the option layer's declarations (bin/options.ts),
// the JSON config file (--config FILE: keys are the flag names; flags on the command line override; an unknown
// key is refused naming it), `--resume` with an optional folder, and the checks that need several options or a
// file read, all made before any work starts.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { boolean, choice, integer, number, path, string, UsageError, type Command, type Option } from './options.ts';
import { OPTIMIZER_KINDS } from '../engine/optim.ts';
import { RESUME_LATEST, type TrainingOptions } from '../train/run_config.ts';

export { RESUME_LATEST };

/** 5GB, 500MB, 10KiB or a plain byte count; transformers' max_shard_size units (GB = 10^9, GiB = 2^30). */
export function parseByteSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?$/i.exec(text.trim());
  if (!m) return null;
  const unit = (m[2] ?? 'B').toUpperCase();
  const scale: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30 };
  const bytes = Math.floor(Number(m[1]) * scale[unit]);
  return bytes >= 1 && Number.isSafeInteger(bytes) ? bytes : null;
}

function byteSize(o: { help: string; default: string }): Option<number> {
  return {
    type: 'string', metavar: 'SIZE', help: `${o.help}; bytes, or with a unit (KB, MB, GB = 10^3.., KiB, MiB, GiB = 2^10..), default ${o.default}`,
    check(raw, flag) {
      const bytes = parseByteSize((raw as string | undefined) ?? o.default);
      if (bytes === null) throw new UsageError(`${flag} must be a size such as 5GB or 200MB, got '${raw}'`);
      return bytes;
    },
  };
}

/** A folder to create or fill: it, or the nearest existing folder above it, must be a writable folder. */
function outputDir(o: { help: string }): Option<string> {
  return {
    type: 'string', required: true, metavar: 'DIR', help: `${o.help}; required`,
    check(raw, flag) {
      if (raw === undefined) throw new UsageError(`${flag} is required`);
      const p = resolve(raw as string);
      let existing = p;
      while (!existsSync(existing)) existing = dirname(existing);
      if (!statSync(existing).isDirectory()) throw new UsageError(`${flag}: cannot write '${raw}': '${existing}' is not a folder`);
      try { accessSync(existing, constants.W_OK); } catch { throw new UsageError(`${flag}: cannot write '${raw}': folder '${existing}' is not writable`); }
      return raw as string;
    },
  };
}

/** A file that must exist and be readable. */
function inputFile(o: { help: string; required?: true }): Option<string | undefined> {
  const base = o.required ? path({ is: 'file', required: true, help: o.help }) : path({ is: 'file', help: o.help });
  return {
    ...base,
    check(raw, flag) {
      const p = base.check(raw, flag);
      if (p !== undefined) { try { accessSync(p, constants.R_OK); } catch { throw new UsageError(`${flag}: '${p}' is not readable`); } }
      return p;
    },
  };
}

/** The options every training command has. The objective's own (e.g. IRFT's --beta) are added beside them. */
export const TRAINING_OPTIONS = {
  model: path({ is: 'dir', required: true, help: 'the model folder to start from: config.json, its safetensors weights, tokenizer.json' }),
  data: inputFile({ required: true, help: 'training data, JSONL (plain or .gz): HH {chosen, rejected}, {messages}, {real, generated} or {prompt, response}' }) as Option<string>,
  out: outputDir({ help: 'the run folder: metrics.jsonl, plots/, checkpoint-<step>/' }),
  config: inputFile({ help: 'a JSON file of options: keys are the flag names (e.g. "max-steps"); flags given here override it' }),
  epochs: number({ min: 0, minExclusive: true, max: 1e6, default: 1, help: 'passes over the training data (fractions allowed); ignored when --max-steps is given' }),
  'max-steps': integer({ min: 1, max: 1e9, help: 'optimizer steps to train; default: as many as --epochs take' }),
  batch: integer({ min: 1, max: 4096, default: 8, help: 'sequences per micro-batch (one forward and backward)' }),
  'grad-accum': integer({ min: 1, max: 4096, default: 1, help: 'micro-batches per optimizer step (gradient accumulation)' }),
  lr: number({ min: 0, max: 10, default: 5e-5, help: 'peak learning rate' }),
  schedule: choice({ choices: ['constant', 'linear', 'cosine', 'constant_with_warmup'], default: 'linear', help: 'learning-rate schedule, as transformers computes it' }),
  warmup: number({ min: 0, max: 1e9, default: 0, help: 'warmup: a number of steps when >= 1 (an integer), a ratio of the total steps when < 1 (rounded up)' }),
  clip: number({ min: 0, max: 1e6, default: 1, help: 'clip the global gradient norm to this (torch clip_grad_norm_); 0 turns clipping off' }),
  optimizer: choice({ choices: OPTIMIZER_KINDS, default: 'adamw', help: 'optimizer, with torch.optim semantics' }),
  'weight-decay': number({ min: 0, max: 10, default: 0, help: 'weight decay (AdamW: decoupled; RMSprop: coupled) on matrices and embeddings, never on biases or norms' }),
  'adam-beta1': number({ min: 0, max: 1, default: 0.9, help: 'AdamW beta1 (below 1)' }),
  'adam-beta2': number({ min: 0, max: 1, default: 0.999, help: 'AdamW beta2 (below 1); the HH recipe uses 0.95' }),
  'adam-eps': number({ min: 0, max: 1, default: 1e-8, help: 'AdamW / RMSprop epsilon' }),
  'max-length': integer({ min: 2, max: 1 << 20, default: 512, help: 'prompt + response tokens at most (the response is cut at its end); at most max_position_embeddings' }),
  'max-prompt-length': integer({ min: 1, max: 1 << 20, default: 128, help: 'prompt tokens at most (cut at the front, BOS kept); below --max-length' }),
  'max-response-length': integer({ min: 1, max: 1 << 20, help: 'response tokens (EOS included) at most, before the --max-length cut' }),
  'lora-r': integer({ min: 1, max: 65536, metavar: 'R', help: 'train LoRA adapters of rank R on a frozen base instead of every weight' }),
  'lora-alpha': number({ min: 0, max: 1e6, help: 'LoRA alpha (scale alpha / r); default: r' }),
  'lora-dropout': number({ min: 0, max: 0.99, default: 0.05, help: 'dropout on the adapters\' input while training' }),
  'lora-targets': string({ metavar: 'M,M,...', help: "target module names, comma-separated, or 'all-linear'; default PEFT's for the architecture" }),
  'weights-dtype': choice({ choices: ['f32', 'f16', 'bf16'], default: 'f32', help: 'storage of the base\'s matrices; f16 and bf16 only with --lora-r (a frozen base)' }),
  'mixed-precision': choice({ choices: ['off', 'f16'], default: 'off', help: 'f16: the products read f16 copies of the f32 weights and activations (tensor cores on a GPU), with f32 master weights and optimizer states and dynamic loss scaling, as torch.cuda.amp' }),
  'loss-scale-init': number({ min: 1, max: 3e38, default: 65536, help: 'with --mixed-precision: the first loss scale (torch GradScaler: 2^16; halved after an overflowing step, which is skipped, doubled after --loss-scale-growth-interval clean steps)' }),
  'loss-scale-growth-interval': integer({ min: 1, max: 1e9, default: 2000, help: 'with --mixed-precision: clean steps in a row before the loss scale doubles (torch GradScaler: 2000)' }),
  'gradient-checkpointing': boolean({ help: 'keep only each transformer layer\'s input for the backward and recompute the layer there: less activation memory for about one more forward' }),
  'save-steps': integer({ min: 1, max: 1e9, default: 500, help: 'write a checkpoint every N optimizer steps (and always at the end)' }),
  'save-total-limit': integer({ min: 1, max: 1e6, help: 'keep at most N checkpoints, removing the oldest; default: keep all' }),
  'max-shard-size': byteSize({ default: '5GB', help: 'full fine-tuning: model.safetensors is split into shards with an index past this size' }),
  resume: string({ metavar: '[DIR]', help: `resume from the latest complete checkpoint in --out ('--resume' alone), or from checkpoint folder DIR` }),
  'eval-data': inputFile({ help: 'evaluation data (same formats): eval loss, and for pairs with a rejected response the mean chosen-minus-rejected log-prob gap' }),
  'eval-steps': integer({ min: 1, max: 1e9, help: 'evaluate every N optimizer steps (and at the end); default: at the end only, when --eval-data is given' }),
  'eval-limit': integer({ min: 1, max: 1e9, help: 'the first N evaluation records only' }),
  limit: integer({ min: 1, max: 1e9, help: 'the first N training records only' }),
  seed: integer({ min: 0, max: 2 ** 32 - 1, default: 42, help: 'seed of the data order, LoRA\'s initialisation and dropout' }),
  'skip-bad-lines': boolean({ help: 'skip data lines that are not valid records (counted and reported) instead of stopping at the first' }),
  'log-steps': integer({ min: 1, max: 1e9, default: 10, help: 'print a progress line every N steps when the output is not a terminal' }),
  'time-kernels': boolean({ help: 'time every kernel (timestamp queries): GPU ms and MFU per phase in the audit, against --peak-tflops or else a short matmul probe at start' }),
  'peak-tflops': number({ min: 0, max: 1e6, minExclusive: true, help: 'peak TFLOP/s for the audit\'s MFU (the device\'s datasheet figure, say); default with --time-kernels: a short matmul probe' }),
};

/** The checks across options (the option layer checked each one alone). Throws UsageError. */
export function checkTrainingOptions(o: TrainingOptions): void {
  if (o.warmup >= 1 && !Number.isInteger(o.warmup)) throw new UsageError(`--warmup ${o.warmup}: a number of steps (>= 1) must be an integer; a ratio is below 1`);
  if (o.schedule === 'constant' && o.warmup > 0) throw new UsageError(`--schedule constant has no warmup (--warmup ${o.warmup}); use --schedule constant_with_warmup`);
  if (o['adam-beta1'] >= 1 || o['adam-beta2'] >= 1) throw new UsageError(`--adam-beta1 and --adam-beta2 must be below 1, got ${o['adam-beta1']} and ${o['adam-beta2']}`);
  if (o['max-prompt-length'] >= o['max-length']) throw new UsageError(`--max-prompt-length ${o['max-prompt-length']} must be below --max-length ${o['max-length']}, so that a response token remains`);
  if (o['weights-dtype'] !== 'f32' && o['lora-r'] === undefined) throw new UsageError(`--weights-dtype ${o['weights-dtype']} stores the matrices in 16 bits, which do not train: it needs --lora-r (a frozen base with adapters)`);
  for (const k of ['lora-alpha', 'lora-targets'] as const) if (o[k] !== undefined && o['lora-r'] === undefined) throw new UsageError(`--${k} needs --lora-r`);
  if (o['eval-steps'] !== undefined && o['eval-data'] === undefined) throw new UsageError('--eval-steps needs --eval-data');
  if (o['eval-limit'] !== undefined && o['eval-data'] === undefined) throw new UsageError('--eval-limit needs --eval-data');
  if (o.resume !== undefined && o.resume !== RESUME_LATEST) {
    if (!existsSync(o.resume) || !statSync(o.resume).isDirectory()) throw new UsageError(`--resume: no such checkpoint folder '${o.resume}'`);
  }
}

/**
 * `--resume` may stand alone: `--resume` followed by nothing or by another flag reads as `--resume latest`
 * (parseArgs has no optional values).
 */
export function expandOptionalResume(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    out.push(args[i]);
    if (args[i] === '--') { out.push(...args.slice(i + 1)); break; }
    if (args[i] === '--resume' && (i + 1 >= args.length || args[i + 1].startsWith('--'))) out.push(RESUME_LATEST);
  }
  return out;
}

/**
 * The JSON config file's options as command-line arguments, put before the given ones so that the command line
 * overrides them: {"max-steps": 30, "skip-bad-lines": true} -> --max-steps 30 --skip-bad-lines. Keys must be
 * options of `known`; a boolean false is the default and adds nothing.
 */
export function configFileArgs(file: string, known: Record<string, Option<unknown>>): string[] {
  let json: unknown;
  try { json = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new UsageError(`--config ${file}: not a readable JSON file: ${(e as Error).message}`); }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`--config ${file}: must hold a JSON object of options`);
  const args: string[] = [];
  for (const [key, value] of Object.entries(json)) {
    const o = known[key];
    if (o === undefined || key === 'config') throw new UsageError(`--config ${file}: unknown key '${key}' (the keys are the flag names without '--', e.g. "max-steps")`);
    if (o.type === 'boolean') {
      if (typeof value !== 'boolean') throw new UsageError(`--config ${file}: key '${key}' must be true or false, got ${JSON.stringify(value)}`);
      if (value) args.push(`--${key}`);
    } else if (o.multiple && Array.isArray(value)) {
      for (const v of value) args.push(`--${key}=${String(v)}`);
    } else {
      if (typeof value !== 'string' && typeof value !== 'number') throw new UsageError(`--config ${file}: key '${key}' must be a string or a number, got ${JSON.stringify(value)}`);
      args.push(`--${key}=${String(value)}`);
    }
  }
  return args;
}

/** Wraps a training command: expands `--resume` alone and prepends the --config file's options. */
export function withConfigFile(command: Command, known: Record<string, Option<unknown>>): Command {
  return {
    ...command,
    async main(args) {
      let expanded = expandOptionalResume(args);
      const at = expanded.findIndex((a) => a === '--config' || a.startsWith('--config='));
      if (at >= 0 && !expanded.slice(0, at).includes('--')) {
        const file = expanded[at].startsWith('--config=') ? expanded[at].slice('--config='.length) : expanded[at + 1];
        if (file !== undefined && existsSync(file) && statSync(file).isFile()) {
          try {
            expanded = [...configFileArgs(file, known), ...expanded];
          } catch (e) {
            if (!(e instanceof UsageError)) throw e;
            console.error(`juice ${command.name}: ${e.message} (juice ${command.name} --help)`);
            return 2;
          }
        }
      }
      return command.main(expanded);
    },
  };
}
