// Host-clocked timing shared by the benchmarks: queue `times` calls, then wait for the GPU once.
import { sync } from '../engine/runtime.ts';

/** Seconds that `times` calls of run() take, from queueing the first to the GPU finishing the last. */
export async function seconds(run: () => void, times = 1): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < times; i++) run();
  await sync();
  return (performance.now() - t0) / 1000;
}

/** The median µs a call of run(), over `batches` batches of `calls` calls each host-clocked to the GPU's end (after one warm-up call). */
export async function medianMicroseconds(run: () => void, batches = 7, calls = 50): Promise<number> {
  run();
  await sync();
  const times: number[] = [];
  for (let r = 0; r < batches; r++) times.push((await seconds(run, calls)) / calls * 1e6);
  return times.sort((a, b) => a - b)[batches >> 1];
}
