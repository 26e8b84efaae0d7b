// The f32 attention kernels' tile plans, candidates against the first of each list (the 8 x 8-thread plan of
// attention_forward.ts pickTiles at D 64 in 32 KiB) in one run: candidates alternated, ROUNDS rounds, medians.
// G: threads per side (GRID), BR query rows x BC keys. Candidates that exceed the device's limits are skipped.
// Each kernel's candidates include its rows kernel where the device has subgroups of 8 (attention_forward_rows.wgsl,
// attention_backward_dq_rows.wgsl: 'rows 16x32', one subgroup of 8 lanes per 16 query rows, key tiles of 32;
// attention_backward_dkdv_rows.wgsl: 'rows 32x16', 16 keys per subgroup, query tiles of 32).
// Usage: [SHAPES=block,T256,T512] [KERNELS=forward,dkdv,dq] [ONLY=G4:16x16,rows:16x32,rows:32x16,...] [ROUNDS=5] [WINDOW=64] [D=64]
//   npx tsx bench/attention_tiles.ts   (block: B8 H4 T64, D; T256 and T512: B1 H4 D64; causal, or a window)
// kernels/attention_tiles.json records the winners per device class; see bench/RESULTS.md.
import { initGpu, releaseGpu, gpu } from '../engine/gpu.ts';
import { launch, deviceLimits } from '../engine/launch.ts';
import { Tensor } from '../engine/tensor.ts';
import { seconds } from './timing.ts';
import { ceilDiv, type KernelCall } from '../kernels/spec.ts';
import { attentionForwardCall, forwardTiles, type AttentionDims, type AttentionMask } from '../kernels/attention_forward.ts';
import { attentionBackwardDkDvCall, dkdvTiles } from '../kernels/attention_backward_dkdv.ts';
import { attentionBackwardDqCall, dqTiles } from '../kernels/attention_backward_dq.ts';
import { attentionDeltaCall } from '../kernels/attention_delta.ts';
import { attentionForwardRowsCall, attentionRowsUnfit, forwardChoice } from '../kernels/attention_forward_rows.ts';
import { attentionBackwardDqRowsCall } from '../kernels/attention_backward_dq_rows.ts';
import { attentionBackwardDkDvRowsCall } from '../kernels/attention_backward_dkdv_rows.ts';

interface Cand { G: number; BR: number; BC: number; rows?: true }
const name = (c: Cand) => (c.rows ? `rows ${c.BR}x${c.BC}` : `G${c.G} ${c.BR}x${c.BC}`);
const kernelsWanted = (process.env.KERNELS ?? 'forward,dkdv,dq').split(',');
const shapesWanted = (process.env.SHAPES ?? 'block,T256,T512').split(',');
const ROUNDS = Number(process.env.ROUNDS ?? 5);

function random(shape: number[], seed: number): Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  return Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + seed)), shape);
}
function withTiles(call: KernelCall, c: Cand, D: number, grid: [number, number, number]): KernelCall {
  return { ...call, constants: { ...call.constants, BR: c.BR, BC: c.BC, GRID: c.G, ROWS: c.BR / c.G, COLS: c.BC / c.G, DIMS: ceilDiv(D, c.G) }, workgroups: grid };
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const SHAPES: Record<string, AttentionDims> = {
  block: { B: 8, H: 4, KVH: 4, T: 64, S: 64, D: Number(process.env.D ?? 64) },
  T256: { B: 1, H: 4, KVH: 4, T: 256, S: 256, D: 64 },
  T512: { B: 1, H: 4, KVH: 4, T: 512, S: 512, D: 64 },
};
const CANDS: Record<string, Cand[]> = {
  forward: [{ G: 8, BR: 32, BC: 32 }, { G: 8, BR: 32, BC: 16 }, { G: 8, BR: 16, BC: 32 }, { G: 8, BR: 16, BC: 16 }, { G: 4, BR: 16, BC: 16 }, { G: 4, BR: 16, BC: 8 }, { G: 4, BR: 8, BC: 16 }, { G: 16, BR: 32, BC: 32 }, { G: 16, BR: 64, BC: 16 }, { G: 16, BR: 16, BC: 64 }, { G: 16, BR: 32, BC: 16 }, { G: 8, BR: 16, BC: 32, rows: true }],
  dkdv: [{ G: 8, BR: 16, BC: 32 }, { G: 8, BR: 32, BC: 16 }, { G: 8, BR: 16, BC: 16 }, { G: 8, BR: 8, BC: 32 }, { G: 4, BR: 16, BC: 16 }, { G: 4, BR: 8, BC: 16 }, { G: 4, BR: 16, BC: 8 }, { G: 16, BR: 16, BC: 32 }, { G: 16, BR: 16, BC: 16 }, { G: 16, BR: 32, BC: 16 }, { G: 8, BR: 32, BC: 16, rows: true }],
  dq: [{ G: 8, BR: 32, BC: 16 }, { G: 8, BR: 16, BC: 32 }, { G: 8, BR: 16, BC: 16 }, { G: 8, BR: 32, BC: 8 }, { G: 4, BR: 16, BC: 16 }, { G: 4, BR: 16, BC: 8 }, { G: 4, BR: 8, BC: 16 }, { G: 16, BR: 32, BC: 16 }, { G: 16, BR: 16, BC: 32 }, { G: 16, BR: 16, BC: 16 }, { G: 8, BR: 16, BC: 32, rows: true }],
};
const FLOATS: Record<string, (c: Cand, D: number) => number> = {
  forward: ({ BR, BC }, D) => BR * D + BC * D + BR * BC + 3 * BR,
  dkdv: ({ BR, BC }, D) => 2 * BC * D + 2 * BR * D + 2 * BR * BC + 2 * BR,
  dq: ({ BR, BC }, D) => 2 * BR * D + 2 * BC * D + BR * BC + 2 * BR,
};

await initGpu();
try {
  const limits = deviceLimits();
  const { features, adapterInfo } = gpu();
  const sub = { subgroups: features.has('subgroups'), subgroupMinSize: adapterInfo.subgroupMinSize, subgroupMaxSize: adapterInfo.subgroupMaxSize };
  console.log(`device ${gpu().adapterInfo.description}; lavapipe's forward at D64: ${JSON.stringify(forwardChoice(limits, sub, 64, 'lavapipe'))}; current plan at D64: fwd ${JSON.stringify(forwardTiles(limits, 64))} dkdv ${JSON.stringify(dkdvTiles(limits, 64))} dq ${JSON.stringify(dqTiles(limits, 64))}`);
  const mask: AttentionMask = { causal: true, window: Number(process.env.WINDOW ?? 0), positionOffset: 0, hasKeyRange: false };
  const summary: string[] = [];
  for (const shape of shapesWanted) {
    const dims = SHAPES[shape];
    const { B, H, KVH, T, S, D } = dims;
    const scale = 1 / Math.sqrt(D);
    const q = random([B, H, T, D], 1), k = random([B, KVH, S, D], 2), v = random([B, KVH, S, D], 3), dout = random([B, H, T, D], 4);
    const out = Tensor.empty([B, H, T, D]), lse = Tensor.empty([B, H, T]), delta = Tensor.empty([B, H, T]);
    const dk = Tensor.empty([B, KVH, S, D]), dv = Tensor.empty([B, KVH, S, D]), dq = Tensor.empty([B, H, T, D]);
    launch(attentionForwardCall(limits, dims, mask, scale), [q, k, v, null], [out, lse]);
    launch(attentionDeltaCall(limits, B * H * T, D), [dout, out], [delta]);
    await seconds(() => {});
    const ins = [q, k, v, dout, lse, delta, null];
    for (const kernel of kernelsWanted) {
      const only = process.env.ONLY?.split(',');
      const cands = CANDS[kernel].filter((c, i) => (i === 0 || !only || only.includes(name(c).replace(' ', ':')))
        && (c.rows ? !attentionRowsUnfit(sub, D) : 4 * FLOATS[kernel](c, D) <= limits.maxComputeWorkgroupStorageSize && c.G * c.G <= limits.maxComputeInvocationsPerWorkgroup));
      const runs = cands.map((c) => {
        if (c.rows && kernel === 'forward') { const call = attentionForwardRowsCall(limits, sub, dims, mask, scale); return () => launch(call, [q, k, v, null], [out, lse]); }
        if (c.rows && kernel === 'dkdv') { const call = attentionBackwardDkDvRowsCall(limits, sub, dims, mask, scale); return () => launch(call, ins, [dk, dv]); }
        if (c.rows) { const call = attentionBackwardDqRowsCall(limits, sub, dims, mask, scale); return () => launch(call, ins, [dq]); }
        if (kernel === 'forward') { const call = withTiles(attentionForwardCall(limits, dims, mask, scale), c, D, [ceilDiv(T, c.BR), H, B]); return () => launch(call, [q, k, v, null], [out, lse]); }
        if (kernel === 'dkdv') { const call = withTiles(attentionBackwardDkDvCall(limits, dims, mask, scale), c, D, [ceilDiv(S, c.BC), KVH, B]); return () => launch(call, ins, [dk, dv]); }
        const call = withTiles(attentionBackwardDqCall(limits, dims, mask, scale), c, D, [ceilDiv(T, c.BR), H, B]); return () => launch(call, ins, [dq]);
      });
      const reps: number[] = [];
      for (const run of runs) { await seconds(run); const once = await seconds(run, 2) / 2; reps.push(Math.max(2, Math.min(30, Math.round(0.15 / once)))); }
      const samples: number[][] = cands.map(() => []);
      for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < cands.length; i++) samples[i].push(1e3 * (await seconds(runs[i], reps[i])) / reps[i]);
      const base = median(samples[0]);
      for (let i = 0; i < cands.length; i++) {
        const m = median(samples[i]);
        const line = `${shape.padEnd(6)} ${kernel.padEnd(8)} ${name(cands[i]).padEnd(12)} ${m.toFixed(2).padStart(8)} ms  x${(base / m).toFixed(2)} vs ${name(cands[0])}  [${samples[i].map((x) => x.toFixed(1)).join(' ')}]`;
        console.log(line); summary.push(line);
      }
    }
  }
  console.log('\n' + summary.join('\n'));
} finally { releaseGpu(); }
