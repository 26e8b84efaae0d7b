// `juice demo`: trains the one-layer demo model on the toy copy task; prints loss per step and the FLOP ledger.
import { writeFileSync } from 'node:fs';
import { gpu, initGpu } from '../../engine/gpu.ts';
import { DEMO_CONFIG, demoParameterCount, trainCopyTask } from '../../train/demo.ts';
import { boolean, defineCommand, integer, number, output } from '../options.ts';

export const demo = defineCommand({
  name: 'demo',
  summary: 'train a one-layer transformer on a toy copy task on the GPU; prints loss per step and the FLOP ledger',
  options: {
    steps: integer({ min: 1, max: 1e6, default: 200, help: 'training steps' }),
    batch: integer({ min: 1, max: 1024, default: 16, help: 'sequences per step' }),
    length: integer({ min: 1, max: DEMO_CONFIG.maxPositions / 2, default: 8, help: `symbols to copy (a sequence is 2 x length tokens, at most the model's ${DEMO_CONFIG.maxPositions} positions)` }),
    lr: number({ min: 0, minExclusive: true, max: 10, default: 0.003, help: 'AdamW learning rate' }),
    seed: integer({ min: 0, max: 2 ** 32 - 1, default: 1, help: 'seed of the initial weights and the data' }),
    'time-kernels': boolean({ help: "add per-kernel GPU times (timestamp queries) to the last step's ledger" }),
    'ledger-json': output({ help: "write the last step's ledger as JSON to FILE" }),
  },
  async run(o) {
    const g = await initGpu();
    console.log(`juice demo: copy task, one-layer GPT-NeoX (${demoParameterCount()} parameters) on ${g.adapterInfo.description || g.adapterInfo.vendor}`);
    console.log(`features: ${[...gpu().features].join(', ') || 'none'}`);
    const t0 = performance.now();
    const { losses, accuracy, lastStepLedger, lastStepLedgerJson } = await trainCopyTask({
      steps: o.steps, batch: o.batch, length: o.length, lr: o.lr, seed: o.seed, timeLastStep: o['time-kernels'], log: (l) => console.log(l),
    });
    const seconds = (performance.now() - t0) / 1000;
    console.log(`\n${o.steps} steps in ${seconds.toFixed(1)} s (${(1000 * seconds / o.steps).toFixed(1)} ms/step); loss ${losses[0].toFixed(3)} -> ${losses[losses.length - 1].toFixed(3)}; copy accuracy ${(100 * accuracy).toFixed(1)}%`);
    console.log('\nFLOP ledger of the last training step:\n');
    console.log(lastStepLedger);
    if (o['ledger-json'] !== undefined) {
      writeFileSync(o['ledger-json'], JSON.stringify(lastStepLedgerJson, null, 2));
      console.log(`\nledger written to ${o['ledger-json']}`);
    }
    return 0;
  },
});
