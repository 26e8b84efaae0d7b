// `juice audit RUN_DIR [--json]`: the per-phase audit of a finished `juice sft`, `juice irft` or `juice rft` run from its
// ledger.json and workloads.json (train/audit.ts): ledger and analytic FLOPs (attention as the tiled kernels execute
// it) and their ratio, the useful FLOPs (attention over visible keys only), bytes, GPU time, and MFU on the useful FLOPs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { auditJson, auditTable, LEDGER_FILE, readRunAudit, WORKLOADS_FILE } from '../../train/audit.ts';
import { boolean, defineCommand, number, path, UsageError } from '../options.ts';

export const audit = defineCommand({
  name: 'audit',
  summary: "a run's FLOPs per phase: the ledger's against the analytic model's, the useful ones, bytes, GPU time and MFU",
  argument: path({ is: 'dir', required: true, help: 'the run folder (the --out of juice sft, juice irft or juice rft)', metavar: 'RUN_DIR' }),
  options: {
    json: boolean({ help: 'one JSON object: per phase ledger_flops, analytic_flops, ratio, useful_flops, bytes, gpu_ms (null when not timed)' }),
    'peak-tflops': number({ min: 0, max: 1e6, minExclusive: true, help: 'peak TFLOP/s for MFU; default: the run\'s (--peak-tflops or its matmul probe)' }),
  },
  async run(o, dir) {
    for (const f of [LEDGER_FILE, WORKLOADS_FILE]) if (!existsSync(join(dir, f))) throw new UsageError(`RUN_DIR: '${dir}' has no ${f} (juice sft, juice irft and juice rft write it at the end of a run)`);
    const { rows, workloads } = readRunAudit(dir);
    if (o.json) { console.log(JSON.stringify(auditJson(rows), null, 2)); return 0; }
    const peak = o['peak-tflops'] ?? workloads.peakTflops ?? 0;
    console.log(auditTable(rows, { peakTflops: peak }));
    if (workloads.peakSource && o['peak-tflops'] === undefined) console.log(`\npeak ${peak.toPrecision(3)} TFLOP/s: ${workloads.peakSource}`);
    return 0;
  },
});
