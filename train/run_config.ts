// A training run's configuration: the checked values of the training options (bin/training_options.ts declares
// them), keyed by their flag names so that the same record is the command line, the --config JSON file and the
// `config` of trainer_state.json.

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
  'save-steps': number; 'save-total-limit'?: number; 'max-shard-size': number; resume?: string;
  'eval-data'?: string; 'eval-steps'?: number; 'eval-limit'?: number; limit?: number; seed: number;
  'skip-bad-lines': boolean; 'log-steps': number; 'time-kernels': boolean;
}

