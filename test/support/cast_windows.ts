// A workload of castF16 on tensors larger than one binding: a flat tensor of 53249 elements (an odd count, rounding
// specials at the window edges) cast and back-propagated through, and the LM head's product on f16 copies
// (headTokenLogprobs of castF16(hidden), castF16(head)) with its gradients, as CausalLM.tokenLogprobs runs it under
// autocast. Run as is, and in a child process whose binding size is cut to 64 KiB (JUICE_MAX_BINDING_BYTES), where
// the flat tensor takes four windows of 16384 elements and the [600, 64] head three; test/kernels/cast.test.ts
// compares the two. As a script it prints the workload's JSON.
import { backward } from '../../engine/autodiff.ts';
import { initGpu } from '../../engine/gpu.ts';
import { ledger } from '../../engine/ledger.ts';
import { castF16 } from '../../engine/ops/cast.ts';
import { sumLastDim } from '../../engine/ops/elementwise.ts';
import { headChunks, headTokenLogprobs } from '../../engine/ops/lm_head.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { readBytes } from '../../engine/runtime.ts';
import { Tensor, tidyAsync } from '../../engine/tensor.ts';
import { randInt, randn, upload } from './util.ts';

export const CAST_WINDOW_BINDING_BYTES = 65536;
export const FLAT = 3 * 16384 + 4097;
const V = 600, C = 64, B = 2, T = 9;
// Values that round up, to ±inf, to subnormals or stay NaN, at the first and last element of each window.
const SPECIALS = [65519.99, -70000, 2.99e-8, NaN, 1 + 3 * 2 ** -11, Infinity];
const EDGES = [0, 16383, 16384, 32767, 32768, 49151, 49152, FLAT - 1];

export interface CastWindowResults {
  /** The f16 bits of castF16 of the flat tensor, as stored. */
  bits: number[];
  /** The flat tensor's gradient and the seed it was back-propagated from (the pass-through: equal). */
  flatGrad: number[];
  seed: number[];
  /** castF16 dispatches of the flat tensor, of the head; the head's vocabulary chunks. */
  flatCasts: number;
  headCasts: number;
  chunks: number;
  logp: number[];
  headGrad: number[];
  hiddenGrad: number[];
}

const castDispatches = () => ledger.all().filter((e) => e.op === 'castF16').reduce((s, e) => s + e.dispatches, 0);

export async function castWindowWorkload(): Promise<CastWindowResults> {
  await initGpu();
  const values = Float32Array.from(randn(FLAT, 21, 100));
  EDGES.forEach((i, k) => (values[i] = SPECIALS[k % SPECIALS.length]!));
  const seedValues = randn(FLAT, 22);
  const x = upload(values, [FLAT], true).keep();
  const hidden = upload(randn(B * T * C, 23), [B, T, C], true).keep();
  const head = upload(randn(V * C, 24, 0.5), [V, C], true).keep();
  try {
    const flat = await tidyAsync(async () => {
      ledger.reset();
      const y = castF16(x);
      const casts = castDispatches();
      const bits = new Uint16Array(await readBytes(y.binding()), 0, FLAT);
      backward(y, Tensor.fromArray(seedValues, [FLAT]));
      return { bits: [...bits], casts };
    });
    const ids = randInt(B * T, V, 25);
    const headPass = await tidyAsync(async () => {
      const h16 = castF16(hidden);
      ledger.reset();
      const w16 = castF16(head);
      const casts = castDispatches();
      const logp = headTokenLogprobs(h16, w16, Tensor.fromArray(ids, [B, T], 'i32'));
      backward(sumLastDim(reshape(logp, [B * T]), false, 1 / (B * T)));
      return { casts, chunks: headChunks(B * T, w16).length, logp: [...await logp.toArray()] };
    });
    return {
      bits: flat.bits, flatGrad: [...await x.grad!.toArray()], seed: [...Float32Array.from(seedValues)], flatCasts: flat.casts,
      headCasts: headPass.casts, chunks: headPass.chunks, logp: headPass.logp,
      headGrad: [...await head.grad!.toArray()], hiddenGrad: [...await hidden.grad!.toArray()],
    };
  } finally {
    for (const t of [x, hidden, head]) { t.grad?.dispose(); t.dispose(); }
  }
}

if (process.argv[1]?.endsWith('cast_windows.ts')) void castWindowWorkload().then((r) => process.stdout.write(JSON.stringify(r)));
