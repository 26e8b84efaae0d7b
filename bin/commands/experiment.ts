// `juice experiment hh-gap [--out DIR] [--methods ...] [--seeds 1,2,3]`: the paper's qualitative result on real
// data (train/experiments/hh_gap.ts): SFT, IRFT and RFT from the same small base on HH-RLHF, the eval gap
// log p(chosen) - log p(rejected) before, during and after; results.json and a table.
import { existsSync } from 'node:fs';
import { initGpu } from '../../engine/gpu.ts';
import { cpuAdapter, DEFAULT_DATA_DIR, HH_GAP_RUNS, missingInputs, runHhGap, selectRuns } from '../../train/experiments/hh_gap.ts';
import { choice, defineCommand, integer, string, UsageError } from '../options.ts';

const EXPERIMENTS = ['hh-gap'] as const;

export const experiment = defineCommand({
  name: 'experiment',
  summary: 'reproduce a result of the paper: hh-gap (SFT vs IRFT vs RFT on HH-RLHF from a small byte-level base; the eval chosen-rejected gap)',
  argument: { ...choice({ choices: EXPERIMENTS, default: 'hh-gap', help: `the experiment: ${EXPERIMENTS.join(', ')}` }), metavar: 'NAME' },
  options: {
    out: string({ default: 'hh-gap', metavar: 'DIR', help: 'folder for results.json, base.json and one folder per run' }),
    'data-dir': string({ metavar: 'DIR', help: `the shared data: hh-byte-base/ and hh-rlhf/; default ${DEFAULT_DATA_DIR}` }),
    methods: string({ metavar: 'M,M,...', help: `methods (sft, irft, rft) or runs (${HH_GAP_RUNS.map((r) => r.id).join(', ')}); default all` }),
    seeds: string({ metavar: 'S,S,...', help: 'seeds (each sets the data order); default 1 on a CPU adapter, 1,2,3 on a GPU' }),
    'max-steps': integer({ min: 1, max: 1e9, help: 'shorten the runs (a dry run): SFT to N steps, IRFT and RFT to the first N·16/2 training prompts; recorded in results.json' }),
    limit: integer({ min: 1, max: 1e9, help: 'the first N training pairs only' }),
    'eval-limit': integer({ min: 1, max: 1e9, help: 'the first N eval pairs only' }),
    samples: integer({ min: 0, max: 300, default: 4, help: "the base's greedy generations to print" }),
  },
  async run(o) {
    const dataDir = o['data-dir'] ?? DEFAULT_DATA_DIR;
    if (!existsSync(dataDir)) throw new UsageError(`--data-dir: no such folder '${dataDir}'`);
    const missing = missingInputs(dataDir);
    if (missing.length > 0) throw new UsageError(`--data-dir ${dataDir}: missing ${missing.join(', ')}`);
    let runs;
    try { runs = selectRuns(o.methods); } catch (e) { throw new UsageError((e as Error).message); }
    let seeds: number[] | undefined;
    if (o.seeds !== undefined) {
      seeds = o.seeds.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
      if (seeds.length === 0 || !seeds.every((s) => Number.isInteger(s) && s >= 0 && s < 2 ** 32)) throw new UsageError(`--seeds must be comma-separated non-negative integers, got '${o.seeds}'`);
    }
    await initGpu();
    seeds ??= cpuAdapter() ? [1] : [1, 2, 3];
    const { results, stopped } = await runHhGap({
      dataDir, out: o.out, runs, seeds, maxSteps: o['max-steps'], limit: o.limit, evalLimit: o['eval-limit'], samples: o.samples,
    });
    if (stopped) return stopped === 'SIGINT' ? 130 : 143;
    return results.every((r) => r.exit_code === 0 && r.after !== null) ? 0 : 1;
  },
});
