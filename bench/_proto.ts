import { readFileSync } from 'node:fs';
import { initGpu, releaseGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { seconds } from './timing.ts';
import { Tensor } from '../engine/tensor.ts';
import { ceilDiv, type Kernel, type KernelCall } from '../kernels/spec.ts';
import { matmulCall, MATMUL_TILES } from '../kernels/matmul.ts';
const kdir = new URL('../kernels/', import.meta.url);
const inc = (f: string) => readFileSync(new URL(f, kdir), 'utf8');
const kernels = new Map<string, Kernel>();
function kernelOf(file: string): Kernel {
  if (!kernels.has(file)) kernels.set(file, {
    name: 'mm' + kernels.size, source: ['enable subgroups;', inc('float_storage.wgsl'), inc('matmul_quads.wgsl'), inc('no_bias.wgsl'), readFileSync(file, 'utf8')].join('\n').replace(/\{\{A_BITS\}\}/g, '32').replace(/\{\{B_BITS\}\}/g, '32'),
    inputs: ['a', 'b', 'bias'], outputs: ['c'], params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']],
    constants: ['TRANS_A', 'TRANS_B', 'A_FORMAT', 'B_FORMAT', 'WG'], absent: ['bias'],
  });
  return kernels.get(file)!;
}
function rows(file: string, M: number, N: number, K: number, wg: number, tm: number, transB: boolean): KernelCall {
  return { kernel: kernelOf(file), constants: { TRANS_A: 0, TRANS_B: Number(transB), A_FORMAT: 0, B_FORMAT: 0, WG: wg },
    params: { M, N, K, strideA: 0, strideB: 0 }, workgroups: [ceilDiv(N, wg * 4), ceilDiv(M, tm), 1], cost: { flops: 2 * M * N * K, bytesRead: 0, bytesWritten: 0 } };
}
await initGpu();
const n = Number(process.argv[2] ?? 512);
const transB = process.argv[3] === 't';
const a = Tensor.zeros([n, n]), bm = Tensor.zeros([n, n]), c = Tensor.empty([n, n]);
const variants: [string, KernelCall][] = [
  ['tiled128', matmulCall(deviceLimits(), { batch: 1, M: n, N: n, K: n, strideA: 0, strideB: 0, transA: false, transB, hasBias: false, dtypeA: 'f32', dtypeB: 'f32' }, MATMUL_TILES['128x128x16/8x8'])],
];
for (const spec of process.argv[4].split(',')) {
  const [file, wg, tm] = spec.split(':');
  variants.push([`${file.split('/').pop()} ${wg}/${tm}`, rows(file, n, n, n, Number(wg), Number(tm), transB)]);
}
for (const [, call] of variants) await seconds(() => launch(call, [a, bm, null], [c]));
const times = new Map<string, number[]>();
const reps = Number(process.env.REPS ?? 3);
for (let r = 0; r < reps; r++) for (const [name, call] of variants) {
  const t = await seconds(() => launch(call, [a, bm, null], [c]), 2) / 2;
  (times.get(name) ?? times.set(name, []).get(name)!).push(t);
}
const base = times.get('tiled128')!.sort((x, y) => x - y)[reps >> 1];
for (const [name, call] of variants) {
  const ts = times.get(name)!.sort((x, y) => x - y); const t = ts[reps >> 1];
  console.log(`${name.padEnd(34)} ${(t * 1e3).toFixed(2)} ms ${(call.cost.flops / t / 1e9).toFixed(2)} GFLOP/s  ${(base / t).toFixed(2)}x faster than tiled`);
}
releaseGpu();
