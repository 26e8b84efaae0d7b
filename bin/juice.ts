// The juice command line: `juice <command> [options]`, one file per command in commands/. Run it through
// the launcher bin/juice (or `node --import tsx bin/juice.ts`): one process, so signals reach the work.
import { releaseGpu } from '../engine/gpu.ts';
import { settle } from '../engine/runtime.ts';
import { COMMANDS, usage } from './commands/index.ts';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = COMMANDS.find((c) => c.name === name);
  if (command) return command.main(rest);
  if (name === '-h' || name === '--help') { console.log(usage()); return 0; }
  console.error(name === undefined ? usage() : `juice: unknown command '${name}' (juice --help lists them)`);
  return 2;
}

main(process.argv.slice(2))
  .then((code) => { releaseGpu(); process.exitCode = code; })
  .catch(async (e: unknown) => {
    console.error(`juice: ${e instanceof Error ? e.message : String(e)}`);
    await settle();
    releaseGpu();
    process.exitCode = 1;
  });
