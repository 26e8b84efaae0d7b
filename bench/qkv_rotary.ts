// qkvRotary's kernels (the attention's q, k, v from the projections, and back) at the demo's shape and two Pythia-like
// ones, in this device's elementwise shape against a thread an element (ELEMENTWISE_SHAPES.gpu), in the same run:
// median µs a call of 7 batches of 50. `npx tsx bench/qkv_rotary.ts`.
import { gpu, initGpu } from '../engine/gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../engine/launch.ts';
import { Tensor } from '../engine/tensor.ts';
import { inverseFrequencies } from '../engine/ops/rotary.ts';
import { qkvRotaryCall, type QkvRotaryLayout } from '../kernels/qkv_rotary.ts';
import { ELEMENTWISE_SHAPES } from '../kernels/spec.ts';
import { medianMicroseconds } from './timing.ts';

const CASES: [string, number, number, number, number, number][] = [ // name, B, T, heads, D, rotary dims
  ['demo', 16, 20, 4, 16, 16],
  ['Pythia-160m-like, rotary_pct 0.25', 8, 128, 12, 64, 16],
  ['full rotary', 4, 256, 12, 64, 64],
];

await initGpu();
const device = elementwiseShape();
console.log(`device: ${gpu().adapterInfo.description}; its shape ${device.threads} threads of up to ${device.perThread}, against a thread an element`);
for (const [name, B, T, H, D, rotaryDims] of CASES) {
  const row = 3 * H * D; // GPT-NeoX's packed query_key_value
  const source = { qRowStride: row, kvRowStride: row, headStride: 3 * D, kOffset: D, vOffset: 2 * D };
  const layout: QkvRotaryLayout = { batch: B, seqLen: T, heads: H, kvHeads: H, headDim: D, kvLength: T, leftPadding: false, oneProjection: true, source };
  const proj = Tensor.fromArray(Float32Array.from({ length: B * T * row }, (_, i) => Math.sin(i)), [B, T, row]);
  const invFreq = Tensor.fromArray(inverseFrequencies(rotaryDims, 10000), [rotaryDims / 2]);
  const heads = [0, 1, 2].map(() => Tensor.empty([B, H, T, D]));
  const grad = Tensor.empty([B, T, row]);
  const cells: string[] = [];
  for (const backward of [false, true]) {
    const time = (shape: typeof device) => medianMicroseconds(() => launch(qkvRotaryCall(deviceLimits(), layout, rotaryDims, 0, backward, shape),
      backward ? [...heads, invFreq, null] : [proj, proj, proj, invFreq, null], backward ? [grad, null, null] : heads));
    const [ours, gpuShape] = [await time(device), await time(ELEMENTWISE_SHAPES.gpu)];
    cells.push(`${backward ? 'backward' : 'forward'} ${ours.toFixed(0)} µs (a thread an element ${gpuShape.toFixed(0)}, ${(gpuShape / ours).toFixed(2)}x)`);
  }
  console.log(`${name} [${B}, ${T}, ${H}, ${D}], ${rotaryDims} rotated: ${cells.join('; ')}`);
  for (const t of [proj, invFreq, ...heads, grad]) t.dispose();
}
process.exit(0);
