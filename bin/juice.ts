#!/usr/bin/env -S npx tsx
// The juice command line: `juice <command> [options]`.
import { releaseGpu } from '../engine/gpu.ts';

const USAGE = `usage: juice <command> [options]

commands:
  demo                 train a one-layer transformer on a toy copy task on the GPU; prints loss and the FLOP ledger
                       [--steps N --batch B --length L --lr LR --seed S --time-kernels --ledger-json FILE]
  inspect DIR          architecture, parameter count, memory plan and FLOPs per token of a Hugging Face model folder
  generate             --model DIR --prompt TEXT: the continuation and tokens/s [--max-new-tokens N --temperature T --top-k K --top-p P --seed S --stop STR --weights-dtype f32|f16|bf16]
  verify DIR           recompute a reference folder (laid out like shared/fixtures/hf/<kind>) and print relative errors as JSON

environment:
  JUICE_DAWN_FLAGS     Dawn toggles, e.g. "enable-dawn-features=allow_unsafe_apis,disable_robustness disable-dawn-features=timestamp_quantization"`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo': return (await import('../train/demo.ts')).demoCommand(rest);
    case 'verify': return (await import('../train/verify.ts')).verifyCommand(rest);
    case 'generate': return (await import('../models/generate.ts')).generateCommand(rest);
    case 'inspect': return (await import('../models/inspect.ts')).inspectCommand(rest);
    case undefined: case '-h': case '--help': console.log(USAGE); return command ? 0 : 2;
    default: console.error(`juice: unknown command '${command}'\n\n${USAGE}`); return 2;
  }
}

main(process.argv.slice(2))
  .then((code) => { releaseGpu(); process.exitCode = code; })
  .catch((e: unknown) => { releaseGpu(); console.error(`juice: ${e instanceof Error ? e.message : String(e)}`); process.exitCode = 1; });
