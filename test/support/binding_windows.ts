// A workload that runs every op taking tensors larger than one binding (embedding forward and backward, the fused
// LM head and its logits, gradient accumulation over two backward passes, the grad norm, AdamW): run as is, and in a
// child process whose binding size is cut to 64 KiB (JUICE_MAX_BINDING_BYTES), where its [600, 64] tables take three
// windows. test/kernels/binding_windows.test.ts compares the two. As a script it prints the workload's JSON.
import { backward, noGrad } from '../../engine/autodiff.ts';
import { GpuError, initGpu } from '../../engine/gpu.ts';
import { add, sumLastDim } from '../../engine/ops/elementwise.ts';
import { embedding } from '../../engine/ops/embedding.ts';
import { gradNormSquared } from '../../engine/ops/grad_norm.ts';
import { headChunks, headLogits, headTokenLogprobs } from '../../engine/ops/lm_head.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { AdamW } from '../../engine/optim.ts';
import { Tensor, tidy, tidyAsync } from '../../engine/tensor.ts';
import { randInt, randn, upload } from './util.ts';

export const WINDOW_BINDING_BYTES = 65536;
const V = 600, C = 64, B = 2, T = 9;

export interface WindowedResults { chunks: number; tooLarge: string; [name: string]: number[] | number | string }

export async function bindingWindowWorkload(): Promise<WindowedResults> {
  await initGpu();
  const table = upload(randn(V * C, 1, 0.5), [V, C], true).keep();
  const head = upload(randn(V * C, 2, 0.5), [V, C], true).keep();
  // Ids in every window, the first and last rows, and one outside the table (a zero row).
  const ids = Int32Array.from(randInt(B * T, V, 3), (id, i) => (i === 0 ? 0 : i === 1 ? V - 1 : i === 2 ? V : id));
  const targets = randInt(B * T, V, 4);
  const out: WindowedResults = { chunks: headChunks(B * T, head).length, tooLarge: '' };
  try {
    for (let pass = 0; pass < 2; pass++) {
      await tidyAsync(async () => {
        const x = embedding(Tensor.fromArray(ids, [B, T], 'i32'), table); // [B, T, C]
        const logp = headTokenLogprobs(x, head, Tensor.fromArray(targets, [B, T], 'i32')); // [B, T]
        if (pass === 0) { out.embedding = [...await x.toArray()]; out.logp = [...await logp.toArray()]; }
        backward(sumLastDim(reshape(logp, [B * T]), false, 1 / (B * T)));
      });
    }
    out.tableGrad = [...await table.grad!.toArray()];
    out.headGrad = [...await head.grad!.toArray()];
    out.gradNormSquared = [...await tidyAsync(() => gradNormSquared([table.grad!, head.grad!]).toArray())];
    const options = { lr: 1e-2, betas: [0.9, 0.99] as [number, number], eps: 1e-8, weightDecay: 0.1 };
    // Two shards of a [601, 64] parameter in windows (the second shard in two, from element 19232): the same bits as one
    // optimizer. On a device whose storage offsets align to 256 bytes those two windows overlap where bound, which is
    // why two windows of one parameter never share a dispatch (engine/optim.ts); lavapipe aligns to 16.
    const odd = (k: number) => { const t = upload(randn(601 * C, 10 + k, 0.5), [601, C], true).keep(); t.grad = upload(randn(601 * C, 20 + k, 0.1), [601, C]).keep(); return t; };
    const [lone, sharded] = [odd(0), odd(0)];
    const entriesOf = (param: Tensor) => [{ name: 'odd', param, decay: true }];
    const loneOpt = new AdamW(entriesOf(lone), options);
    const shards = [0, 1].map((shardIndex) => new AdamW(entriesOf(sharded), options, { shardIndex, shardCount: 2 }));
    const opt = new AdamW([{ name: 'table', param: table, decay: true }, { name: 'head', param: head, decay: false }], options);
    opt.step();
    opt.step(0.5);
    for (const scale of [1, 0.5]) { loneOpt.step(scale); for (const shard of shards) shard.step(scale); }
    const bits = async (t: Tensor) => JSON.stringify([...new Uint32Array((await t.toArray()).buffer, 0, t.numel)]);
    out.shardedBitsEqual = String(await bits(lone) === await bits(sharded));
    for (const o of [loneOpt, ...shards]) o.dispose();
    for (const t of [lone, sharded]) { t.grad!.dispose(); t.dispose(); }
    out.table = [...await table.toArray()];
    out.head = [...await head.toArray()];
    out.logits = [...await tidyAsync(() => noGrad(() => headLogits(embedding(Tensor.fromArray(ids.slice(0, 3), [3], 'i32'), table), head)).toArray())];
    try { tidy(() => add(table, table)); } catch (e) { if (e instanceof GpuError) out.tooLarge = e.message; else throw e; }
    opt.dispose();
  } finally {
    table.dispose();
    head.dispose();
  }
  return out;
}

if (process.argv[1]?.endsWith('binding_windows.ts')) void bindingWindowWorkload().then((r) => process.stdout.write(JSON.stringify(r)));
