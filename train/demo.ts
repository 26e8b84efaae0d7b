// `juice demo`: trains a one-layer GPT-NeoX (models/gpt_neox.ts, initialised from scratch) on a toy copy task
// on the GPU, end to end: each step is one command encoder (forward, backward, AdamW) and one read-back (the loss).
import { backward } from '../engine/autodiff.ts';
import { ledger } from '../engine/ledger.ts';
import { memoryPlan } from '../engine/params.ts';
import { pool } from '../engine/pool.ts';
import { rng, type Random } from '../engine/random.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { reshape } from '../engine/ops/shape.ts';
import { AdamW } from '../engine/optim.ts';
import { CausalLM } from '../models/causal_lm.ts';
import { modelParams, parseConfig, type ModelConfig } from '../models/config.ts';
import { initParameters } from '../models/init.ts';

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

/** A tiny GPTNeoXForCausalLM: 1 layer, hidden 64, 4 heads, full rotary, parallel residual (transformers' defaults). */
export const DEMO_CONFIG: ModelConfig = parseConfig({
  model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], vocab_size: 16, hidden_size: 64, num_attention_heads: 4,
  num_hidden_layers: 1, intermediate_size: 256, rotary_pct: 1, rotary_emb_base: 10000, layer_norm_eps: 1e-5,
  max_position_embeddings: 64, use_parallel_residual: true, tie_word_embeddings: false, hidden_act: 'gelu',
}, 'the demo config');

/** Parameters of the demo model, from its table. */
export function demoParameterCount(): number { return memoryPlan(modelParams(DEMO_CONFIG)).parameters; }

export interface DemoResult { losses: number[]; accuracy: number; lastStepLedger: string; lastStepLedgerJson: ReturnType<typeof ledger.toJSON> }

export async function trainCopyTask(opts: { steps: number; batch: number; length: number; lr: number; seed: number; timeLastStep?: boolean; log?: (line: string) => void }): Promise<DemoResult> {
  const c = DEMO_CONFIG;
  const model = new CausalLM(c, initParameters(c, opts.seed));
  const opt = new AdamW(model.params.entries(), { lr: opts.lr, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 });
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
      const l = ledger.inPhase('forward', () => crossEntropy(reshape(model.forward(idsT), [opts.batch * T, c.vocabSize]), targetsT));
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
  const accuracy = await ledger.inPhase('evaluation', () => copyAccuracy(model, rng(opts.seed + 2), opts.length));
  opt.dispose();
  model.dispose();
  return { losses, accuracy, lastStepLedger, lastStepLedgerJson };
}

/** Greedy accuracy on the copied half of fresh sequences, teacher-forced. */
async function copyAccuracy(model: CausalLM, r: Random, length: number): Promise<number> {
  const c = model.config, batch = 32, T = 2 * length;
  const { ids, targets } = copyBatch(r, batch, length);
  const logits = tidy(() => model.forward(Tensor.fromArray(ids, [batch, T], 'i32')));
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
