// Device errors surface as exceptions that name the op; misuse is refused with a clear message.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, initGpu } from '../../engine/gpu.ts';
import { launch } from '../../engine/launch.ts';
import { sync } from '../../engine/runtime.ts';
import { Tensor, tidy } from '../../engine/tensor.ts';
import { add } from '../../engine/ops/elementwise.ts';
import type { Kernel } from '../../kernels/spec.ts';

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try { await p; } catch (e) { assert.match((e as Error).message, pattern); return; }
  assert.unreachable(`expected an error matching ${pattern}`);
}

test('an invalid shader throws an error naming the op', async () => {
  await initGpu();
  const broken: Kernel = { name: 'brokenShaderOp', source: '@compute @workgroup_size(1) fn main() { let x: f32 = ; }', inputs: [], outputs: ['out'], params: [] };
  const out = Tensor.empty([4]);
  launch({ kernel: broken, workgroups: [1], cost: { flops: 0, bytesRead: 0, bytesWritten: 0 } }, [], [out]);
  await rejects(sync(), /brokenShaderOp/);
  out.dispose();
});

test('an invalid binding throws an error naming the op', async () => {
  // The shader needs 64 bytes; a 4-byte tensor is bound.
  const needs64: Kernel = {
    name: 'tooSmallBindingOp',
    source: '@group(0) @binding(0) var<storage, read_write> out: array<vec4f, 4>;\n@compute @workgroup_size(1) fn main() { out[0] = vec4f(1.0); }',
    inputs: [], outputs: ['out'], params: [],
  };
  const out = Tensor.empty([1]);
  launch({ kernel: needs64, workgroups: [1], cost: { flops: 0, bytesRead: 0, bytesWritten: 0 } }, [], [out]);
  await rejects(sync(), /tooSmallBindingOp/);
  out.dispose();
});

test('a later op still works after an error was reported', async () => {
  const t = Tensor.fromArray([1, 2, 3], [3]);
  assert.equal([...(await t.toArray())], [1, 2, 3]);
  t.dispose();
});

test('a buffer over maxBufferSize is refused before allocation; one over a binding only where an op binds it whole', () => {
  const { maxBufferSize, maxStorageBufferBindingSize } = gpu().limits;
  assert.throws(() => Tensor.empty([Math.floor(maxBufferSize / 4) + 1]), /maxBufferSize/);
  if (maxStorageBufferBindingSize >= maxBufferSize) return;
  tidy(() => {
    const big = Tensor.zeros([maxStorageBufferBindingSize / 4 + 64]);
    assert.throws(() => add(big, big), /op 'add': binding 'a' is tensor f32 \[\d+\] of \d+ bytes, more than one binding holds/);
  });
});

test('a disposed tensor cannot be used', () => {
  const t = Tensor.fromArray([1], [1]);
  t.dispose();
  assert.throws(() => t.binding(), /used after dispose/);
});

test('a dispatch past the per-dimension limit is refused naming the op', () => {
  const k: Kernel = { name: 'hugeGridOp', source: '@compute @workgroup_size(1) fn main() {}', inputs: [], outputs: [], params: [] };
  assert.throws(() => launch({ kernel: k, workgroups: [gpu().limits.maxComputeWorkgroupsPerDimension + 1], cost: { flops: 0, bytesRead: 0, bytesWritten: 0 } }, [], []), /hugeGridOp/);
});

test('a binding given where the variant leaves it out, or missing where it reads it, is refused naming both', () => {
  // 'bias' is absent from this variant: its WGSL declares no binding 1.
  const k: Kernel = { name: 'absentBindingOp', source: '@compute @workgroup_size(1) fn main() {}', inputs: ['x', 'bias'], outputs: ['out'], params: [], absent: ['bias'] };
  const call = { kernel: k, workgroups: [1] as [number], cost: { flops: 0, bytesRead: 0, bytesWritten: 0 } };
  tidy(() => {
    const t = Tensor.zeros([4]);
    assert.throws(() => launch(call, [t, t], [t]), /op 'absentBindingOp': input 'bias' is given, but this kernel variant leaves it out/);
    assert.throws(() => launch(call, [null, null], [t]), /op 'absentBindingOp': input 'x' is missing, but this kernel variant reads it/);
    assert.throws(() => launch(call, [t, null], [null]), /op 'absentBindingOp': output 'out' is missing, but this kernel variant writes it/);
  });
});

test.run();
