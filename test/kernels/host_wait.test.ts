// While juice waits on the device, dawn.node polls it in a setImmediate loop. With hostWait 'yield' the host sleeps
// between polls (engine/gpu.ts awaitDevice), so that on a CPU device the main thread leaves the cores to the device:
// measured here as the main thread's own CPU time (/proc, Linux) over a wait of about a second, against spinning.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { gpu, initGpu, setHostWait, type HostWait } from '../../engine/gpu.ts';
import { matmul } from '../../engine/ops/matmul.ts';
import { sync } from '../../engine/runtime.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';

/** Seconds of CPU the main thread (tid = pid) has used: utime + stime, fields 14 and 15 of its stat. */
function mainThreadCpuSeconds(): number {
  const stat = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks (USER_HZ, 100 on Linux)
}

/** The main thread's CPU time over wall time while the device runs `calls` 512^3 products queued at once. */
async function busyFraction(mode: HostWait, a: Tensor, calls: number): Promise<{ fraction: number; wall: number; value: number }> {
  setHostWait(mode);
  const outs = tidy(() => Array.from({ length: calls }, () => matmul(a, a).keep()));
  const cpu0 = mainThreadCpuSeconds(), t0 = performance.now();
  await sync();
  const wall = (performance.now() - t0) / 1000;
  const fraction = (mainThreadCpuSeconds() - cpu0) / wall;
  const [value] = await outs[calls - 1].toArray();
  for (const o of outs) o.dispose();
  return { fraction, wall, value };
}

test('a yielding host uses a small share of a core while the device works; the results are the same', async () => {
  await initGpu();
  const before = gpu().hostWait;
  const n = 512;
  const a = Tensor.fromArray(Float32Array.from({ length: n * n }, (_, i) => ((i % 7) - 3) / 8), [n, n]);
  try {
    await busyFraction('spin', a, 2); // compiles the kernel
    // Calls enough for about a second of device time, from one timed call.
    const once = (await busyFraction('spin', a, 1)).wall;
    const calls = Math.max(4, Math.min(400, Math.round(1 / once)));
    const spin = await busyFraction('spin', a, calls);
    const yielded = await busyFraction('yield', a, calls);
    console.log(`  main thread busy ${(100 * spin.fraction).toFixed(0)}% spinning, ${(100 * yielded.fraction).toFixed(0)}% yielding, over ${calls} calls (${spin.wall.toFixed(2)} s, ${yielded.wall.toFixed(2)} s)`);
    assert.is(yielded.value, spin.value);
    assert.ok(yielded.fraction < 0.25, `main thread busy ${yielded.fraction.toFixed(2)} of the wait while yielding`);
    assert.ok(spin.fraction > 2 * yielded.fraction, `spinning (${spin.fraction.toFixed(2)}) should use more than twice the yielding share (${yielded.fraction.toFixed(2)})`);
  } finally {
    setHostWait(before);
    a.dispose();
  }
});

test.run();
