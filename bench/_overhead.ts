import { initGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { Tensor } from '../engine/tensor.ts';
import { scaleCall } from '../kernels/scale.ts';
import { binaryBroadcastCall } from '../kernels/binary.ts';
import { sync } from '../engine/runtime.ts';
await initGpu();
const out0 = [];
for (const n of [4096, 20480, 81920, 1<<20]) {
  const a = Tensor.fromArray(new Float32Array(n).fill(1), [n]); const out = Tensor.empty([n]);
  const calls = { scale: scaleCall(deviceLimits(), n, 0.5), mulb: binaryBroadcastCall(deviceLimits(), 'mul', [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n) };
  for (const [name, call] of Object.entries(calls)) {
  const ins = name === 'scale' ? [a] : [a, a];
  const run = () => launch(call, ins, [out]);
  run(); await sync();
  const res = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now(); for (let i = 0; i < 200; i++) run(); await sync(); const t2 = performance.now();
    res.push((t2 - t0) / 200 * 1000);
  }
  res.sort((x, y) => x - y);
  out0.push(`${name} ${n}: ${res[2].toFixed(1)}`);
  }
}
console.log(process.env.WGS, out0.join(' | '));
process.exit(0);
