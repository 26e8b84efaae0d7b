// Host-clocked timing shared by the benchmarks: queue `times` calls, then wait for the GPU once.
import { sync } from '../engine/runtime.ts';

/** Seconds that `times` calls of run() take, from queueing the first to the GPU finishing the last. */
export async function seconds(run: () => void, times = 1): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < times; i++) run();
  await sync();
  return (performance.now() - t0) / 1000;
}
