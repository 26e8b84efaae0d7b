import { initGpu } from '../engine/gpu.ts';
import { deviceLimits, launch } from '../engine/launch.ts';
import { Tensor } from '../engine/tensor.ts';
import { scaleCall } from '../kernels/scale.ts';
import { sync } from '../engine/runtime.ts';
await initGpu();
const n = 4; const a = Tensor.fromArray(new Float32Array(n).fill(1), [n]); const out = Tensor.empty([n]);
const call = scaleCall(deviceLimits(), n, 0.5);
for (let r = 0; r < 40; r++) { for (let i = 0; i < 200; i++) launch(call, [a], [out]); await sync(); }
process.exit(0);
