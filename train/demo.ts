// `juice demo`: trains a one-layer transformer on a toy copy task on the GPU, end to end:
// each step is one command encoder (forward, backward, AdamW) and one read-back (the loss).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { backward } from '../engine/autodiff.ts';
import { gpu, initGpu } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { memoryPlan } from '../engine/params.ts';
import { pool } from '../engine/pool.ts';
import { rng, type Random } from '../engine/random.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { reshape } from '../engine/ops/shape.ts';
import { AdamW } from '../engine/optim.ts';
import { initTinyTransformer, tinyTransformerForward, tinyTransformerParams, type TinyTransformerConfig } from '../models/tiny_transformer.ts';

export const COPY_SYMBOLS = 8;
export const SEPARATOR = COPY_SYMBOLS;

/**
 * Copy task: L random symbols, a separator, then the same L symbols again. Inputs are the first 2L
 * tokens, targets the next token; only the copied half is scored (the first half is unpredictable).
 */
export function copyBatch(r: Random, batch: number, length: number): { ids: Int32Array; targets: Int32Array } {
  const T = 2 * length;
  const ids = new Int32Array(batch * T), targets = new Int32Array(batch * T).fill(-100);
  for (let b = 0; b < batch; b++) {
    const seq = Array.from({ length }, () => r.int(COPY_SYMBOLS));
    const full = [...seq, SEPARATOR, ...seq];
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = full[t];
      if (t >= length) targets[b * T + t] = full[t + 1];
    }
  }
  return { ids, targets };
}

export const DEMO_CONFIG: TinyTransformerConfig = { vocabSize: 16, hidden: 64, heads: 4, layers: 1, intermediate: 256, rotaryBase: 10000, eps: 1e-5 };

export interface DemoResult { losses: number[]; accuracy: number; lastStepLedger: string; lastStepLedgerJson: ReturnType<typeof ledger.toJSON> }

export async function trainCopyTask(opts: { steps: number; batch: number; length: number; lr: number; seed: number; timeLastStep?: boolean; log?: (line: string) => void }): Promise<DemoResult> {
  const c = DEMO_CONFIG;
  const params = initTinyTransformer(c, opts.seed);
  const opt = new AdamW(params.entries(), { lr: opts.lr, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 });
  const data = rng(opts.seed + 1);
  const T = 2 * opts.length;
  const losses: number[] = [];
  for (let step = 1; step <= opts.steps; step++) {
    if (step === opts.steps) {
      ledger.reset(); // the printed ledger is the last step's
      ledger.timing = !!opts.timeLastStep;
    }
    const { ids, targets } = copyBatch(data, opts.batch, opts.length);
    const loss = tidy(() => {
      const idsT = Tensor.fromArray(ids, [opts.batch, T], 'i32');
      const targetsT = Tensor.fromArray(targets, [opts.batch * T], 'i32');
      const l = ledger.inPhase('forward', () => crossEntropy(reshape(tinyTransformerForward(c, params, idsT), [opts.batch * T, c.vocabSize]), targetsT));
      backward(l);
      return l;
    });
    ledger.inPhase('optimizer', () => opt.step());
    opt.zeroGrad();
    losses.push(await loss.item()); // the step's one read-back
    loss.dispose();
    if (step === 1 || step % 25 === 0 || step === opts.steps) opts.log?.(`step ${String(step).padStart(4)}  loss ${losses[losses.length - 1].toFixed(4)}  live ${(pool.liveBytes / 1e6).toFixed(2)} MB`);
  }
  ledger.timing = false;
  const lastStepLedger = ledger.table(), lastStepLedgerJson = ledger.toJSON();
  const accuracy = await ledger.inPhase('evaluation', () => copyAccuracy(c, params, rng(opts.seed + 2), opts.length));
  opt.dispose();
  params.dispose();
  return { losses, accuracy, lastStepLedger, lastStepLedgerJson };
}

/** Greedy accuracy on the copied half of fresh sequences, teacher-forced. */
async function copyAccuracy(c: TinyTransformerConfig, params: ReturnType<typeof initTinyTransformer>, r: Random, length: number): Promise<number> {
  const batch = 32, T = 2 * length;
  const { ids, targets } = copyBatch(r, batch, length);
  const logits = tidy(() => tinyTransformerForward(c, params, Tensor.fromArray(ids, [batch, T], 'i32')));
  const values = await logits.toArray();
  logits.dispose();
  let right = 0, total = 0;
  for (let i = 0; i < batch * T; i++) {
    if (targets[i] < 0) continue;
    let best = 0;
    for (let v = 1; v < c.vocabSize; v++) if (values[i * c.vocabSize + v] > values[i * c.vocabSize + best]) best = v;
    right += best === targets[i] ? 1 : 0;
    total++;
  }
  return right / total;
}

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: {
    steps: { type: 'string', default: '200' }, batch: { type: 'string', default: '16' },
    length: { type: 'string', default: '8' }, lr: { type: 'string', default: '0.003' }, seed: { type: 'string', default: '1' },
    'ledger-json': { type: 'string' }, 'time-kernels': { type: 'boolean', default: false },
  } });
  const opts = { steps: Number(values.steps), batch: Number(values.batch), length: Number(values.length), lr: Number(values.lr), seed: Number(values.seed) };
  for (const [k, v] of Object.entries(opts)) if (!Number.isFinite(v) || v <= 0) { console.error(`juice demo: --${k} must be a positive number, got '${(values as Record<string, unknown>)[k]}'`); return 2; }
  const g = await initGpu();
  const plan = memoryPlan(tinyTransformerParams(DEMO_CONFIG));
  console.log(`juice demo: copy task, one-layer transformer (${plan.parameters} parameters) on ${g.adapterInfo.description || g.adapterInfo.vendor}`);
  console.log(`features: ${[...gpu().features].join(', ') || 'none'}`);
  const t0 = performance.now();
  const { losses, accuracy, lastStepLedger, lastStepLedgerJson } = await trainCopyTask({ ...opts, timeLastStep: values['time-kernels'], log: (l) => console.log(l) });
  const seconds = (performance.now() - t0) / 1000;
  console.log(`\n${opts.steps} steps in ${seconds.toFixed(1)} s (${(1000 * seconds / opts.steps).toFixed(1)} ms/step); loss ${losses[0].toFixed(3)} -> ${losses[losses.length - 1].toFixed(3)}; copy accuracy ${(100 * accuracy).toFixed(1)}%`);
  console.log('\nFLOP ledger of the last training step:\n');
  console.log(lastStepLedger);
  if (values['ledger-json']) {
    writeFileSync(values['ledger-json'], JSON.stringify(lastStepLedgerJson, null, 2));
    console.log(`\nledger written to ${values['ledger-json']}`);
  }
  return 0;
}
