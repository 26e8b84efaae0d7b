// A transformer training step as a fixed benchmark: pre-LN block(s) from engine ops, MSE (or cross-entropy) loss,
// backward, AdamW (no weight decay); one submit per step and one read-back (the loss).
//   block (default): B8 T64 C256, 4 heads, MLP 1024, causal attention, MSE against a random target.
//   --pythia: Pythia-160m-shaped: 12 such blocks at C768, 12 heads, MLP 3072, token embedding (50304 x 768), final
//     LayerNorm, the fused LM head and the next-token cross-entropy (engine/ops/lm_head.ts: no [B·T, V] logits; the
//     154 MB embedding and head are bound in windows where they exceed one binding, as on lavapipe), B1 T128 unless
//     --batch / --seq say otherwise. --logits-head: the head as linear + crossEntropy instead (the [B·T, V] logits;
//     refused where they or the weight exceed one binding). Sequential residual, no rotary (Pythia has parallel
//     residual and rotary): the shapes, not the model.
//   --layers N: N blocks of the default shape (MSE on the last).
//   --gradient-checkpointing: each block through engine/autodiff.ts checkpoint (its input kept, replayed in the backward).
//   --host-wait both: the timed steps alternate between the host yielding its core while it waits on the device and
//     spinning (engine/gpu.ts awaitDevice), and print each median and their ratio; yield or spin: that one only.
// Prints ms per step over the timed steps and the pool's peak of a step (in all, and above the bytes live before it:
// gradients and activations), then a per-kernel table from one more step with ledger timing (--time-kernels style:
// each dispatch timed alone), then one JSON line {"ms_per_step": <median>, "peak_bytes": ..., ...}.
// Usage: npx tsx bench/block_step.ts [--pythia [--batch B] [--seq T] [--logits-head] | --layers N] [--steps N] [--gradient-checkpointing] [--host-wait yield|spin|both]
import { backward, checkpoint, zeroGrad } from '../engine/autodiff.ts';
import { gpu, initGpu, releaseGpu, setHostWait, type HostWait } from '../engine/gpu.ts';
import { ledger } from '../engine/ledger.ts';
import { gelu } from '../engine/ops/activations.ts';
import { attention } from '../engine/ops/attention.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { meanLastDim, mul, sub } from '../engine/ops/elementwise.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { linear } from '../engine/ops/matmul.ts';
import { layerNorm } from '../engine/ops/norms.ts';
import { headTokenLogprobs } from '../engine/ops/lm_head.ts';
import { nextTokenLoss } from '../train/objectives/sft.ts';
import { permute, reshape, split } from '../engine/ops/shape.ts';
import { makeOptimizer } from '../engine/optim.ts';
import { pool } from '../engine/pool.ts';
import { flush, sync } from '../engine/runtime.ts';
import { Tensor, tidy } from '../engine/tensor.ts';

interface Config { name: string; B: number; T: number; C: number; H: number; F: number; layers: number; vocab: number | null }
const BLOCK: Config = { name: 'block B8 T64 C256 H4 MLP1024', B: 8, T: 64, C: 256, H: 4, F: 1024, layers: 1, vocab: null };
const PYTHIA: Config = { name: 'Pythia-160m-shaped B1 T128', B: 1, T: 128, C: 768, H: 12, F: 3072, layers: 12, vocab: 50304 };

/** Deterministic values in [-scale, scale). */
function values(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = ((s / 2 ** 32) * 2 - 1) * scale; }
  return out;
}

function parameter(shape: number[], seed: number, scale: number, fill?: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = Tensor.fromArray(fill === undefined ? values(n, seed, scale) : new Float32Array(n).fill(fill), shape).keep();
  t.requiresGrad = true;
  return t;
}

interface Block { ln1w: Tensor; ln1b: Tensor; wqkv: Tensor; bqkv: Tensor; wo: Tensor; bo: Tensor; ln2w: Tensor; ln2b: Tensor; w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor }

function makeBlock(c: Config, seed: number): Block {
  const s = (fanIn: number) => 1 / Math.sqrt(fanIn);
  return {
    ln1w: parameter([c.C], 0, 0, 1), ln1b: parameter([c.C], 0, 0, 0),
    wqkv: parameter([3 * c.C, c.C], seed + 1, s(c.C)), bqkv: parameter([3 * c.C], 0, 0, 0),
    wo: parameter([c.C, c.C], seed + 2, s(c.C)), bo: parameter([c.C], 0, 0, 0),
    ln2w: parameter([c.C], 0, 0, 1), ln2b: parameter([c.C], 0, 0, 0),
    w1: parameter([c.F, c.C], seed + 3, s(c.C)), b1: parameter([c.F], 0, 0, 0),
    w2: parameter([c.C, c.F], seed + 4, s(c.F)), b2: parameter([c.C], 0, 0, 0),
  };
}

/** x [B, T, C] -> x + attn(ln1(x)), then + mlp(ln2(.)). */
function blockForward(c: Config, p: Block, x: Tensor): Tensor {
  const D = c.C / c.H;
  const qkv = linear(layerNorm(x, p.ln1w, p.ln1b, 1e-5), p.wqkv, p.bqkv); // [B, T, 3C]
  // q, k and v [B, H, T, D] in one split (as the models do): their gradients land in one dqkv, no fills or adds.
  const [q, k, v] = split(reshape(qkv, [c.B, c.T, 3 * c.H, D]), 2, [c.H, c.H, c.H], [0, 2, 1, 3]);
  const a = attention(q, k, v, { causal: true }); // [B, H, T, D]
  const merged = reshape(permute(a, [0, 2, 1, 3]), [c.B, c.T, c.C]);
  // The residual adds happen in the output projections' stores (linear's residual), as in the models.
  const x1 = linear(merged, p.wo, p.bo, { residual: x });
  return linear(gelu(linear(layerNorm(x1, p.ln2w, p.ln2b, 1e-5), p.w1, p.b1)), p.w2, p.b2, { residual: x1 });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => (args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : undefined);
  const c: Config = args.includes('--pythia') ? { ...PYTHIA, B: valueOf('--batch') ?? PYTHIA.B, T: valueOf('--seq') ?? PYTHIA.T } : { ...BLOCK, layers: valueOf('--layers') ?? 1 };
  if (c.vocab) c.name = `Pythia-160m-shaped B${c.B} T${c.T}`;
  const logitsHead = args.includes('--logits-head');
  const steps = valueOf('--steps') ?? (c.layers > 1 ? 3 : 10);
  const checkpointed = args.includes('--gradient-checkpointing');
  const hostWaitArg = args.includes('--host-wait') ? args[args.indexOf('--host-wait') + 1] : gpu().hostWait;
  if (!['yield', 'spin', 'both'].includes(hostWaitArg)) throw new Error(`--host-wait ${hostWaitArg}: expected yield, spin or both`);
  const modes: HostWait[] = hostWaitArg === 'both' ? ['yield', 'spin'] : [hostWaitArg as HostWait];
  const { limits, adapterInfo } = gpu();
  const note = c.vocab ? (logitsHead ? 'the logits head' : 'the fused head') : '';
  if (logitsHead && c.vocab && Math.max(4 * c.vocab * c.C, 4 * c.B * c.T * c.vocab) > limits.maxStorageBufferBindingSize)
    throw new Error(`--logits-head: the head weight (${4 * c.vocab * c.C} bytes) or the logits (${4 * c.B * c.T * c.vocab} bytes) exceed maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}`);
  console.log(`device: ${adapterInfo.description || adapterInfo.architecture}; ${c.name}${c.layers > 1 ? `, ${c.layers} layers` : ''}${c.vocab ? `, vocab ${c.vocab}` : ''}${checkpointed ? ', gradient checkpointing' : ''}${note ? ` (${note})` : ''}`);

  const blocks = Array.from({ length: c.layers }, (_, i) => makeBlock(c, 10 * i));
  const embed = c.vocab ? parameter([c.vocab, c.C], 7, 0.02) : null;
  const lnf = c.vocab ? [parameter([c.C], 0, 0, 1), parameter([c.C], 0, 0, 0)] : [];
  const headW = c.vocab ? parameter([c.vocab, c.C], 8, 1 / Math.sqrt(c.C)) : null;
  const params = [...blocks.flatMap((b) => Object.values(b)), ...(embed ? [embed, headW!, ...lnf] : [])];
  const optimizer = makeOptimizer('adamw', params.map((param, i) => ({ name: `p${i}`, param, decay: false })), { lr: 1e-4, weightDecay: 0 });

  const rows = c.B * c.T;
  const x = Tensor.fromArray(values(rows * c.C, 1, 1), [c.B, c.T, c.C]).keep();
  const target = Tensor.fromArray(values(rows * c.C, 2, 1), [c.B, c.T, c.C]).keep();
  const ids = c.vocab ? Tensor.fromArray(Array.from({ length: rows }, (_, i) => (i * 7919) % c.vocab!), [c.B, c.T], 'i32').keep() : null;
  const next = c.vocab ? Tensor.fromArray(Array.from({ length: rows }, (_, i) => (i % c.T === c.T - 1 ? -100 : ((i + 1) * 7919) % c.vocab!)), [rows], 'i32').keep() : null;

  const lossOf = (): Tensor => {
    let h = embed ? embedding(ids!, embed) : x;
    for (const b of blocks) h = checkpointed ? checkpoint((v) => blockForward(c, b, v), h) : blockForward(c, b, h);
    if (!embed) {
      const d = sub(h, target);
      return meanLastDim(reshape(mul(d, d), [rows * c.C])); // MSE
    }
    const hidden = layerNorm(h, lnf[0], lnf[1], 1e-5); // [B, T, C]
    // Both forms: the mean cross-entropy of each position's next id (the last position predicts nothing).
    if (!logitsHead) return nextTokenLoss(headTokenLogprobs(hidden, headW!, ids!));
    return crossEntropy(reshape(linear(hidden, headW!), [rows, c.vocab!]), next!, { ignoreIndex: -100 });
  };
  /** One training step: forward, backward, AdamW, one submit, the loss read back. */
  const step = async (): Promise<number> => {
    const loss = tidy(() => {
      const l = lossOf();
      backward(l);
      optimizer.step();
      zeroGrad(params);
      return l.keep();
    });
    flush();
    const [v] = await loss.toArray();
    loss.dispose();
    return v;
  };

  const first = await step(); // compiles every pipeline
  const times = new Map<HostWait, number[]>(modes.map((m) => [m, []]));
  let last = first;
  const liveBefore = pool.liveBytes; // parameters, optimizer states, inputs
  pool.resetPeak();
  for (let i = 0; i < steps * modes.length; i++) {
    const mode = modes[i % modes.length];
    setHostWait(mode);
    const t0 = performance.now();
    last = await step();
    const ms = performance.now() - t0;
    times.get(mode)!.push(ms);
    console.log(`step ${i + 1}: ${ms.toFixed(1)} ms, loss ${last.toFixed(5)}${modes.length > 1 ? ` (host ${mode}s)` : ''}`);
  }
  setHostWait(modes[0]);
  const medianOf = (t: number[]) => [...t].sort((a, b) => a - b)[t.length >> 1];
  const medians = Object.fromEntries(modes.map((m) => [m, +medianOf(times.get(m)!).toFixed(2)]));
  const median = medians[modes[0]];
  if (modes.length > 1) console.log(`host wait: yield ${medians.yield} ms/step, spin ${medians.spin} ms/step (median of ${steps} each, interleaved): spin/yield ${(medians.spin / medians.yield).toFixed(2)}x`);
  const peak = pool.peakBytes, mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  console.log(`${c.name}: ${median.toFixed(1)} ms/step (median of ${steps}), loss ${first.toFixed(5)} -> ${last.toFixed(5)}; pool peak ${mib(peak)}, ${mib(peak - liveBefore)} above the ${mib(liveBefore)} live before a step`);

  ledger.reset();
  ledger.timing = true;
  await step();
  await sync();
  ledger.timing = false;
  console.log(ledger.table());
  const byOp = Object.fromEntries(ledger.byOp().map((r) => [r.key, +(r.ns / 1e6).toFixed(2)]));
  console.log(JSON.stringify({ ms_per_step: +median.toFixed(2), bench: c.name, layers: c.layers, vocab: c.vocab, gradient_checkpointing: checkpointed, steps, loss_first: first, loss_last: last,
    peak_bytes: peak, step_peak_bytes: peak - liveBefore, host_wait: modes.length > 1 ? medians : modes[0], kernel_ms: byOp, note: note || undefined }));
  for (const t of [...params, x, target, ...(ids ? [ids, next!] : [])]) t.dispose();
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
