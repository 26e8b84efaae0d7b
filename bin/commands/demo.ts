// `juice demo`: reward learning on the embedded task (train/demo.ts): a base trained from scratch by SFT, then SFT,
// IRFT and RFT from it for the same steps; prints the held-out metrics per method and the per-phase audit.
import { mkdirSync, writeFileSync } from 'node:fs';
import { gpu, initGpu } from '../../engine/gpu.ts';
import { auditTable, matmulProbe } from '../../train/audit.ts';
import { DEMO_DEFAULTS, demoParameterCount, metricsTable, runDemo, writeDemoOutputs } from '../../train/demo.ts';
import { MAX_DIGITS, OPS, type Op } from '../../train/tasks/expert_task.ts';
import { boolean, defineCommand, integer, number, output, string, UsageError } from '../options.ts';

const d = DEMO_DEFAULTS;

export const demo = defineCommand({
  name: 'demo',
  summary: 'reward learning on the embedded task: a tiny GPT-NeoX base by SFT from scratch, then SFT, IRFT and RFT from it; held-out metrics and the per-phase FLOP audit',
  options: {
    seed: integer({ min: 0, max: 2 ** 31 - 1, default: d.seed, help: 'seed of the weights, the task splits and the sampling' }),
    out: string({ default: 'demo-output', help: 'folder for <method>.jsonl, results.json, ledger.json and demo.svg' }),
    'base-steps': integer({ min: 1, max: 1e6, default: d.baseSteps, help: 'SFT steps of the base, from scratch' }),
    steps: integer({ min: 1, max: 1e6, default: d.steps, help: 'optimizer steps of each method from the base' }),
    batch: integer({ min: 2, max: 1024, default: d.batch, help: 'sequences per SFT step, pairs per IRFT step, samples per RLOO step' }),
    'min-digits': integer({ min: 2, max: MAX_DIGITS, default: d.minDigits, help: 'fewest digits in a prompt' }),
    'max-digits': integer({ min: 2, max: MAX_DIGITS, default: d.maxDigits, help: `most digits in a prompt (at most ${MAX_DIGITS})` }),
    ops: string({ default: d.ops.join(''), metavar: 'OPS', help: `the task's operations, letters of ${OPS.join('')} (S sort, R reverse, I increment, P partition); default ${d.ops.join('')}` }),
    'base-lr': number({ min: 0, minExclusive: true, max: 1, default: d.baseLr, help: "the base's peak learning rate (warmup, cosine)" }),
    lr: number({ min: 0, minExclusive: true, max: 1, default: d.lr, help: 'constant learning rate of every method' }),
    stages: integer({ min: 1, max: 100, default: d.stages, help: 'IRFT stages (1 = SPIN)' }),
    beta: number({ min: 0, minExclusive: true, max: 100, default: d.beta, help: "IRFT's beta" }),
    temperature: number({ min: 0, max: 10, default: d.temperature, help: "sampling temperature of IRFT's and RFT's generations (0: greedy)" }),
    'no-rft': boolean({ help: 'skip RFT' }),
    'reward-steps': integer({ min: 1, max: 1e5, default: d.rewardSteps, help: "RFT: the reward model's steps" }),
    'beta-kl': number({ min: 0, max: 100, default: d.betaKl, help: 'RFT: KL coefficient of the RLOO return' }),
    'eval-size': integer({ min: 1, max: 4096, default: d.evalSize, help: 'eval split size' }),
    'eval-every': integer({ min: 1, max: 1e6, default: d.evalEvery, help: 'evaluate every this many steps of a method' }),
    'peak-tflops': number({ min: 0, minExclusive: true, max: 1e6, help: 'peak for MFU (default: a short matmul probe)' }),
    'time-kernels': boolean({ help: 'time every dispatch (GPU timestamps): GPU ms and MFU per phase in the audit' }),
    'ledger-json': output({ help: "write the whole run's ledger as JSON to FILE" }),
  },
  async run(o) {
    if (o['min-digits'] > o['max-digits']) throw new Error(`--min-digits ${o['min-digits']} > --max-digits ${o['max-digits']}`);
    const ops = [...new Set(o.ops)];
    if (ops.length === 0 || ops.some((x) => !(OPS as readonly string[]).includes(x))) throw new UsageError(`--ops must be letters of ${OPS.join('')}, got '${o.ops}'`);
    mkdirSync(o.out, { recursive: true }); // a folder that cannot be made fails before the work
    const g = await initGpu();
    console.log(`juice demo: reward learning on the embedded task, a ${demoParameterCount()}-parameter GPT-NeoX from scratch on ${g.adapterInfo.description || g.adapterInfo.vendor}; task: operations ${ops.join('')}, ${o['min-digits']}-${o['max-digits']} digits`);
    console.log(`features: ${[...gpu().features].join(', ') || 'none'}`);
    const peak = o['peak-tflops'] ?? (o['time-kernels'] ? await matmulProbe(256, 4) : undefined);
    const r = await runDemo({
      seed: o.seed, minDigits: o['min-digits'], maxDigits: o['max-digits'], ops: ops as Op[], baseSteps: o['base-steps'], steps: o.steps, batch: o.batch,
      baseLr: o['base-lr'], lr: o.lr, stages: o.stages, beta: o.beta, temperature: o.temperature, rft: !o['no-rft'],
      rewardSteps: o['reward-steps'], rlooSamples: d.rlooSamples, betaKl: o['beta-kl'], evalSize: o['eval-size'], evalEvery: o['eval-every'],
      timeKernels: o['time-kernels'], log: (l) => console.log(l),
    });
    const ref = r.reference;
    console.log(`\nheld-out metrics on ${r.options.evalSize} eval prompts (the weaker policy's rejected answers score ${ref.rejectedScore.toFixed(3)}; the expert's log-likelihood of its demonstrations is ${ref.expertLogProbDemo.toFixed(3)} per sequence):\n`);
    console.log(metricsTable(r));
    console.log('\ngreedy answers to the first eval prompts:');
    for (const s of r.samples) console.log(`  ${s.prompt}${s.demonstration}  ${Object.entries(s.answers).map(([m, a]) => `${m} ${a || '∅'}`).join('  ')}`);
    console.log(`\nper-phase audit of the whole run (ratio = ledger / analytic over all ops; by kind below):\n`);
    console.log(auditTable(r.audit, { peakTflops: peak ?? 0 }));
    console.log(`\nby kind (GFLOP; the analytic model counts the products and attention; 'other' is norms, GELU, rotary, log-softmax, sampling, adds):\n`);
    console.log(['phase'.padEnd(16), 'products'.padStart(10), 'analytic'.padStart(10), 'ratio'.padStart(7), 'attention'.padStart(10), 'analytic'.padStart(10), 'ratio'.padStart(7), 'other'.padStart(10)].join(' '));
    const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(3) : '—').padStart(7);
    for (const k of r.kinds) {
      if (k.products + k.attention + k.other + k.analyticProducts === 0) continue;
      console.log([k.phase.padEnd(16), (k.products / 1e9).toFixed(4).padStart(10), (k.analyticProducts / 1e9).toFixed(4).padStart(10), ratio(k.products, k.analyticProducts),
        (k.attention / 1e9).toFixed(4).padStart(10), (k.analyticAttention / 1e9).toFixed(4).padStart(10), ratio(k.attention, k.analyticAttention), (k.other / 1e9).toFixed(4).padStart(10)].join(' '));
    }
    const files = await writeDemoOutputs(r, o.out);
    console.log(`\nwrote ${files.join(', ')}`);
    if (o['ledger-json'] !== undefined) {
      writeFileSync(o['ledger-json'], JSON.stringify(r.ledger, null, 2));
      console.log(`ledger written to ${o['ledger-json']}`);
    }
    console.log(`demo: ${r.seconds.toFixed(1)} s`);
    return 0;
  },
});
