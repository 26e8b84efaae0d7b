// The attention decode's two kernels (kernels/attention_decode.ts DecodeVariant: a workgroup a query row and chunk, a
// thread a query row and chunk) at the demo's rollout step (16 rows, 4 heads of 16, 30 keys), a batch of hh-byte-base
// rollouts (8 rows, 6 heads of 64, 200 keys) and a Mistral-7B-shaped step at one row (32 heads of 128 over 8 kv heads,
// 1024 and 4096 keys, split into chunks of 256 and merged), in the same run: median µs a call of 7 batches of 50, and
// each variant as a multiple of the device's own. `npx tsx bench/attention_decode.ts`.
import { gpu, initGpu } from '../engine/gpu.ts';
import { attentionDecode } from '../engine/ops/attention.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { DECODE_VARIANTS } from '../kernels/attention_decode.ts';
import { medianMicroseconds } from './timing.ts';

const CASES: [string, number, number, number, number, number][] = [ // name, B, H, KVH, D, keys
  ['demo rollout step', 16, 4, 4, 16, 30],
  ['hh-byte-base rollouts', 8, 6, 6, 64, 200],
  ['Mistral-7B, 1024 keys', 1, 32, 8, 128, 1024],
  ['Mistral-7B, 4096 keys', 1, 32, 8, 128, 4096],
];

await initGpu();
const own = gpu().onHostCpu ? DECODE_VARIANTS.cpu : DECODE_VARIANTS.gpu;
console.log(`device: ${gpu().adapterInfo.description}; its decode variant: ${own}`);
const results: Record<string, unknown>[] = [];
for (const [name, B, H, KVH, D, keys] of CASES) {
  const capacity = keys + 16; // a cache with room left, as generation's
  const q = Tensor.fromArray(Float32Array.from({ length: B * H * D }, (_, i) => Math.sin(i)), [B, H, 1, D]);
  const [k, v] = [1, 2].map((s) => Tensor.fromArray(Float32Array.from({ length: B * KVH * capacity * D }, (_, i) => Math.cos(s * i)), [B, KVH, capacity, D]));
  const us: Record<string, number> = {};
  for (const variant of ['workgroup', 'thread'] as const) us[variant] = await medianMicroseconds(() => tidy(() => { attentionDecode(q, k, v, { cacheLength: keys, variant }); }));
  const line = (['workgroup', 'thread'] as const).map((variant) => `${variant} ${us[variant].toFixed(1)} µs (${(us[variant] / us[own]).toFixed(2)}x)`).join(', ');
  console.log(`${name} [B ${B}, H ${H}/${KVH}, D ${D}, ${keys} keys]: ${line}`);
  results.push({ case: name, ...us });
  for (const t of [q, k, v]) t.dispose();
}
console.log(JSON.stringify({ attentionDecode: results }));
