import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, initGpu } from '../../engine/gpu.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { add, fill, mul, scale, sumLastDim } from '../../engine/ops/elementwise.ts';
import { backward, noGrad, tapeLength } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { pool, sizeClass } from '../../engine/pool.ts';
import { submitCount, sync } from '../../engine/runtime.ts';

test('size classes waste at most a quarter', () => {
  for (const n of [1, 255, 256, 257, 1000, 4096, 5000, 123457, 1 << 24]) {
    const c = sizeClass(n);
    assert.ok(c >= n && c <= Math.max(256, n * 1.25), `${n} -> ${c}`);
  }
});

test('ledger.reset(phase) forgets that phase only; reset() every entry', () => {
  ledger.reset();
  const cost = { flops: 3, bytesRead: 4, bytesWritten: 5 };
  ledger.inPhase('probe', () => { ledger.record('matmul', cost); ledger.record('add', cost); });
  ledger.inPhase('policy-forward', () => ledger.record('matmul', cost));
  ledger.record('matmul', cost);
  ledger.reset('probe');
  assert.equal(ledger.all().map((e) => [e.phase, e.op, e.flops]).sort(), [['other', 'matmul', 3], ['policy-forward', 'matmul', 3]]);
  ledger.reset();
  assert.equal(ledger.all(), []);
});

test('device has the adapter limits, not the defaults', async () => {
  const g = await initGpu();
  // WebGPU's default is 128 MiB and 16 KiB; lavapipe and real GPUs offer at least as much, often more.
  assert.ok(g.limits.maxStorageBufferBindingSize >= 134217728);
  assert.ok(g.limits.maxComputeWorkgroupStorageSize >= 16384);
  assert.is(g.device.limits.maxStorageBuffersPerShaderStage, g.limits.maxStorageBuffersPerShaderStage);
  assert.is(g.device.limits.maxComputeWorkgroupStorageSize, g.limits.maxComputeWorkgroupStorageSize);
});

test('add/mul broadcast and backward', async () => {
  const base = pool.liveBytes;
  const a = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]); a.requiresGrad = true;
  const b = Tensor.fromArray([10, 20, 30], [3]); b.requiresGrad = true;
  const loss = tidy(() => sumLastDim(sumLastDim(mul(add(a, b), b))));
  assert.equal(await loss.item(), (11 * 10 + 22 * 20 + 33 * 30) + (14 * 10 + 25 * 20 + 36 * 30));
  backward(loss);
  loss.dispose();
  // d/da = b ; d/db = sum over rows of (a + 2b)
  assert.equal([...(await a.grad!.toArray())], [10, 20, 30, 10, 20, 30]);
  assert.equal([...(await b.grad!.toArray())], [1 + 4 + 40, 2 + 5 + 80, 3 + 6 + 120]);
  a.grad!.dispose(); b.grad!.dispose(); a.dispose(); b.dispose();
  assert.is(pool.liveBytes, base);
});

test('16-bit storage: two values per word, widened on read, odd lengths padded', async () => {
  const values = [1, -2, 65504, 0.1, 3.140625];
  const h = Tensor.fromArray(values, [5], 'f16'), b = Tensor.fromArray(values, [5], 'bf16');
  assert.is(h.bytes, 12);
  // f16 keeps 0.1 to 11 bits, bf16 to 8 bits; 65504 is f16's largest finite value and rounds to 65536 in bf16.
  assert.equal([...(await h.toArray())], [1, -2, 65504, Math.fround(0.0999755859375), 3.140625]);
  assert.equal([...(await b.toArray())], [1, -2, 65536, Math.fround(0.10009765625), 3.140625]);
  const bits = Tensor.fromBits(Uint16Array.from([0x3c00, 0xc000, 0x7bff]), [3], 'f16');
  assert.equal([...(await bits.toArray())], [1, -2, 65504]);
  for (const t of [h, b, bits]) t.dispose();
});

test('noGrad records nothing', () => {
  const a = Tensor.fromArray([1], [1]); a.requiresGrad = true;
  const before = tapeLength();
  const y = noGrad(() => add(a, a));
  assert.is(tapeLength(), before);
  assert.not.ok(y.requiresGrad);
  y.dispose(); a.dispose();
});

test('one submit for many dispatches; the uniform ring grows by flushing once', async () => {
  await sync();
  const s0 = submitCount();
  const x = tidy(() => {
    let t = fill([8], 1);
    for (let i = 0; i < 100; i++) t = scale(t, 1.01);
    return t;
  });
  const v = await x.toArray();
  assert.is(submitCount() - s0, 1);
  assert.ok(Math.abs(v[0] - 1.01 ** 100) < 1e-4);
  x.dispose();
  // More dispatches than the 1 MiB uniform ring holds (broadcasting binary ops carry 48 bytes of parameters).
  const align = Math.max(16, gpu().limits.minUniformBufferOffsetAlignment);
  const n = Math.ceil((1 << 20) / (Math.ceil(48 / align) * align)) + 10;
  const one = fill([1], 1);
  let t = fill([4], 0);
  const s1 = submitCount();
  for (let i = 0; i < n; i++) { const u = add(t, one); t.dispose(); t = u; }
  assert.equal([...(await t.toArray())], [n, n, n, n]);
  assert.is(submitCount() - s1, 2);
  t.dispose(); one.dispose();
});

test('timestamp timing fills the ledger when the device has timestamp-query', async () => {
  if (!gpu().features.has('timestamp-query')) { console.log('  (skipped: no timestamp-query on this device)'); return; }
  ledger.reset();
  ledger.timing = true;
  const y = tidy(() => scale(fill([1 << 16], 2), 3));
  await y.toArray();
  await sync();
  ledger.timing = false;
  const row = ledger.byOp().find((r) => r.key === 'scale')!;
  assert.is(row.timed, 1);
  assert.ok(row.ns > 0, 'kernel time recorded');
  assert.match(ledger.table(), /GFLOP\/s/);
  y.dispose();
});

test.run();
