// The command table: `juice <name>` runs COMMANDS' entry of that name; the usage text is generated from it.
import type { Command } from '../options.ts';
import { audit } from './audit.ts';
import { demo } from './demo.ts';
import { experiment } from './experiment.ts';
import { generate } from './generate.ts';
import { inspect } from './inspect.ts';
import { irft } from './irft.ts';
import { mergeLora } from './merge_lora.ts';
import { plot } from './plot.ts';
import { rft } from './rft.ts';
import { sft } from './sft.ts';
import { verify } from './verify.ts';

export const COMMANDS: Command[] = [demo, verify, inspect, generate, mergeLora, sft, irft, rft, audit, plot, experiment];

export function usage(): string {
  return [
    'usage: juice <command> [options]     (juice <command> --help: its options, their ranges and defaults)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(12)}${c.summary}`),
    '',
    'environment:',
    '  JUICE_DAWN_FLAGS  Dawn toggles, e.g. "enable-dawn-features=allow_unsafe_apis,disable_robustness disable-dawn-features=timestamp_quantization"',
  ].join('\n');
}
