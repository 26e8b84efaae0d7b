// A training run's configuration: the checked values of the training options (bin/training_options.ts declares
// them), keyed by their flag names so that the same record is the command line, the --config JSON file and the
// `config` of trainer_state.json. Also what every trainer checks and derives from them before any GPU work.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig } from '../models/config.ts';
import { DEFAULT_LORA_TARGETS, loraTargetModules, type LoraTargets } from '../models/lora.ts';
import { Tokenizer } from '../models/tokenizer.ts';
import { latestCheckpoint, listCheckpoints } from './checkpoint.ts';
import { GRAD_SCALER_DEFAULTS, type LossScalerOptions } from './loss_scaler.ts';
import type { LoopOptions } from './loop.ts';

/** A training run's options or inputs are unusable; the message names the flag or file. */
export class RunConfigError extends Error {
  constructor(message: string) { super(message); this.name = 'RunConfigError'; }
}

/** The value `--resume` alone stands for: the latest complete checkpoint in --out. */
export const RESUME_LATEST = 'latest';

/** The checked values of the training options (bin/training_options.ts). */
export interface TrainingOptions {
  model: string; data: string; out: string; config?: string;
  epochs: number; 'max-steps'?: number; batch: number; 'grad-accum': number;
  lr: number; schedule: 'constant' | 'linear' | 'cosine' | 'constant_with_warmup'; warmup: number; clip: number;
  optimizer: 'adamw' | 'rmsprop'; 'weight-decay': number; 'adam-beta1': number; 'adam-beta2': number; 'adam-eps': number;
  'max-length': number; 'max-prompt-length': number; 'max-response-length'?: number;
  'lora-r'?: number; 'lora-alpha'?: number; 'lora-dropout': number; 'lora-targets'?: string; 'weights-dtype': 'f32' | 'f16' | 'bf16';
  'gradient-checkpointing': boolean;
  'mixed-precision': 'off' | 'f16'; 'loss-scale-init': number; 'loss-scale-growth-interval': number;
  'save-steps': number; 'save-total-limit'?: number; 'max-shard-size': number; resume?: string;
  'eval-data'?: string; 'eval-steps'?: number; 'eval-limit'?: number; limit?: number; seed: number;
  'skip-bad-lines': boolean; 'log-steps': number; 'time-kernels': boolean; 'peak-tflops'?: number;
}


/**
 * --mixed-precision's loss scaling: GradScaler's rule with the given first scale and growth interval, and torch's
 * growth and backoff factors (2, 0.5); undefined for an f32 run.
 */
export function lossScalingOf(o: TrainingOptions): LossScalerOptions | undefined {
  if (o['mixed-precision'] === 'off') return undefined;
  return { ...GRAD_SCALER_DEFAULTS, initScale: o['loss-scale-init'], growthInterval: o['loss-scale-growth-interval'] };
}

/** The training loop's options that come straight from the training options, the same for every trainer. */
export function loopOptionsOf(o: TrainingOptions, command: string): Pick<LoopOptions,
  'optimizer' | 'clipNorm' | 'lossScaling' | 'saveSteps' | 'saveTotalLimit' | 'evalSteps' | 'maxShardBytes' | 'config' | 'logSteps'> {
  return {
    optimizer: { kind: o.optimizer, options: { lr: o.lr, weightDecay: o['weight-decay'], eps: o['adam-eps'], betas: [o['adam-beta1'], o['adam-beta2']] } },
    clipNorm: o.clip > 0 ? o.clip : null, lossScaling: lossScalingOf(o),
    saveSteps: o['save-steps'], saveTotalLimit: o['save-total-limit'], evalSteps: o['eval-steps'], maxShardBytes: o['max-shard-size'],
    config: { command, ...o }, logSteps: o['log-steps'],
  };
}

/** What every trainer derives from --model and the options before loading anything onto the GPU. */
export interface RunSetup { tokenizer: Tokenizer; eos: number; padId: number; targets: LoraTargets | undefined; resumeDir: string | undefined }

export function runSetup(o: TrainingOptions, config: ModelConfig, log: (l: string) => void): RunSetup {
  if (!existsSync(join(o.model, 'tokenizer.json'))) throw new RunConfigError(`--model ${o.model}: no tokenizer.json`);
  const tokenizer = Tokenizer.fromFolder(o.model);
  const eos = Array.isArray(config.eosTokenId) ? config.eosTokenId[0] : config.eosTokenId ?? tokenizer.eosTokenId;
  if (eos === null || eos === undefined) throw new RunConfigError(`--model ${o.model}: neither config.json nor the tokenizer names an EOS token`);
  const padId = tokenizer.padTokenId ?? config.padTokenId ?? eos;
  const targets = o['lora-r'] !== undefined ? loraTargets(o['lora-targets'], config) : undefined;
  return { tokenizer, eos, padId, targets, resumeDir: resumeFolder(o, log) };
}

export function loraTargets(text: string | undefined, config: ModelConfig): LoraTargets {
  if (text === undefined) return DEFAULT_LORA_TARGETS[config.modelType];
  if (text.trim() === 'all-linear') return 'all-linear';
  const list = text.split(',').map((t) => t.trim()).filter((t) => t !== '');
  try { loraTargetModules(config, list); } catch (e) { throw new RunConfigError(`--lora-targets: ${(e as Error).message}`); }
  return list;
}

/** The folder to resume from: the latest complete checkpoint in --out, or the one given; undefined for a new run. */
export function resumeFolder(o: TrainingOptions, log: (l: string) => void): string | undefined {
  if (o.resume === undefined) {
    const found = existsSync(o.out) ? listCheckpoints(o.out) : [];
    if (found.length > 0) throw new RunConfigError(`--out ${o.out} already holds ${found.map((c) => `checkpoint-${c.step}`).join(', ')}: pass --resume to continue that run, or give another --out`);
    return undefined;
  }
  if (o.resume !== RESUME_LATEST) return o.resume;
  const latest = latestCheckpoint(o.out);
  if (!latest) throw new RunConfigError(`--resume: no complete checkpoint in ${o.out}`);
  for (const s of latest.skipped) log(`skipping ${s.path}: ${s.reason}`);
  return latest.path;
}
