// `juice plot RUN_DIR`: draws RUN_DIR/metrics.jsonl as SVGs in RUN_DIR/plots (train/plot.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { METRICS_FILE } from '../../train/metrics.ts';
import { writePlots } from '../../train/plot.ts';
import { defineCommand, path, UsageError } from '../options.ts';

export const plot = defineCommand({
  name: 'plot',
  summary: "draw a run folder's metrics.jsonl as SVGs (loss, learning rate, gradient norm) in its plots/ folder",
  argument: path({ is: 'dir', required: true, help: 'the run folder (the --out of a training command), holding metrics.jsonl', metavar: 'RUN_DIR' }),
  options: {},
  async run(_, dir) {
    if (!existsSync(join(dir, METRICS_FILE))) throw new UsageError(`RUN_DIR: '${dir}' has no ${METRICS_FILE}`);
    const files = await writePlots(dir);
    console.log(files.length > 0 ? files.join('\n') : `no plots: ${join(dir, METRICS_FILE)} holds no finite values`);
    return 0;
  },
});
