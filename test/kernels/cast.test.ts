// castF16 (engine/ops/cast.ts): the f16 copies of mixed precision. Bit for bit the host's f32ToF16 (round to nearest
// even, subnormals, overflow to ±inf, NaN, an odd count); its gradient passes through in f32, so a product of two
// cast operands gives the f32 leaves the float64 reference's gradients of the f16-rounded product (dC rounded to
// f16 too, as matmulBackward takes an f16 product's gradients); a 16-bit leaf with requiresGrad is still refused.
// Tensors larger than one binding (test/support/cast_windows.ts, in a child process with a 64 KiB binding) are cast
// window by window to the same bits, their gradient passed through exactly, and the LM head's product reads such a
// copy (the vocabulary chunks change the order of additions: 1e-6).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { backward } from '../../engine/autodiff.ts';
import { ledger } from '../../engine/ledger.ts';
import { castF16 } from '../../engine/ops/cast.ts';
import { linear } from '../../engine/ops/matmul.ts';
import { Tensor } from '../../engine/tensor.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/dtype.ts';
import { CAST_WINDOW_BINDING_BYTES, castWindowWorkload, FLAT, type CastWindowResults } from '../support/cast_windows.ts';
import { assertClose, download, initGpu, randn, upload } from '../support/util.ts';

const CHILD = fileURLToPath(new URL('../support/cast_windows.ts', import.meta.url));
const TSX = fileURLToPath(new URL('../../bin/tsx.mjs', import.meta.url));

const halfRounded = (v: ArrayLike<number>) => Float64Array.from(f16ToF32(f32ToF16(Float32Array.from(v))));

test('castF16 rounds as f32ToF16: ties to even, subnormals, overflow to inf, NaN, an odd count; no FLOPs', async () => {
  await initGpu();
  const special = [0, -0, 1, -1, 65504, 65519.99, 65520, -70000, 1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, -Infinity, NaN, 3.14159];
  const values = Float32Array.from([...special, ...randn(1000, 5, 100)]); // 1019 elements: the last word half empty
  const x = Tensor.fromArray(values, [values.length]);
  ledger.reset();
  const y = castF16(x);
  assert.is(y.dtype, 'f16');
  const bits = new Uint16Array(new Float32Array(await y.toArray()).length);
  f32ToF16(new Float32Array(await y.toArray()), bits); // the widened values back to bits: exact for every f16
  const expected = f32ToF16(values);
  for (let i = 0; i < values.length; i++) {
    const nan = Number.isNaN(values[i]!);
    assert.ok(nan ? (bits[i]! & 0x7c00) === 0x7c00 && (bits[i]! & 0x3ff) !== 0 : bits[i] === expected[i], `element ${i} (${values[i]}): 0x${bits[i]!.toString(16)}, expected 0x${expected[i]!.toString(16)}`);
  }
  const charged = ledger.all().find((e) => e.op === 'castF16')!;
  assert.is(charged.flops, 0);
  assert.is(charged.bytesRead, 4 * values.length);
  assert.is(charged.bytesWritten, 2 * (values.length + 1));
});

test('a product of castF16 copies: the f32 leaves get the gradients of the f16-rounded product', async () => {
  const [M, N, K] = [5, 6, 7];
  const xs = randn(M * K, 1), ws = randn(N * K, 2), gs = randn(M * N, 3, 1e-3);
  const x = upload(xs, [M, K], true), w = upload(ws, [N, K], true), seed = upload(gs, [M, N]);
  const y = linear(castF16(x), castF16(w)); // [M, N] f32
  const [x16, w16, g16] = [halfRounded(xs), halfRounded(ws), halfRounded(gs)];
  const yRef = new Float64Array(M * N), dxRef = new Float64Array(M * K), dwRef = new Float64Array(N * K);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    yRef[m * N + n] += x16[m * K + k]! * w16[n * K + k]!;
    dxRef[m * K + k] += g16[m * N + n]! * w16[n * K + k]!;
    dwRef[n * K + k] += g16[m * N + n]! * x16[m * K + k]!;
  }
  assertClose(await download(y), yRef, 1e-6, 'forward');
  backward(y, seed);
  assert.is(x.grad!.dtype, 'f32');
  assertClose(await download(x.grad!), dxRef, 1e-6, 'dx');
  assertClose(await download(w.grad!), dwRef, 1e-6, 'dw');
  const leaf = Tensor.fromArray(ws, [N, K], 'f16');
  leaf.requiresGrad = true;
  assert.throws(() => linear(x, leaf), /is f16 with requiresGrad set; 16-bit tensors are frozen/);
});

test('castF16 of tensors larger than one binding: window by window, the same bits; the gradient passed through', async () => {
  const whole = await castWindowWorkload();
  const r = spawnSync(process.execPath, ['--import', TSX, CHILD], { encoding: 'utf8', env: { ...process.env, JUICE_MAX_BINDING_BYTES: String(CAST_WINDOW_BINDING_BYTES) }, timeout: 120_000, maxBuffer: 2 ** 26 });
  assert.is(r.status, 0, r.stderr);
  const windowed = JSON.parse(r.stdout) as CastWindowResults;
  assert.equal([whole.flatCasts, whole.headCasts, whole.chunks], [1, 1, 1], 'one binding holds everything here');
  assert.equal([windowed.flatCasts, windowed.headCasts, windowed.chunks], [4, 3, 3], 'four windows of the flat tensor, three of the head and its chunks');
  assert.is(whole.bits.length, FLAT);
  const differ = whole.bits.findIndex((b, i) => b !== windowed.bits[i]);
  assert.is(differ, -1, `element ${differ}: 0x${windowed.bits[differ]?.toString(16)} windowed, 0x${whole.bits[differ]?.toString(16)} in one binding`);
  assert.ok(whole.bits.includes(0x7c00) && whole.bits.includes(0xfc00) && whole.bits.some((b) => (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0), 'the specials reach the windows\' edges');
  for (const run of [whole, windowed]) assert.equal(run.flatGrad, run.seed, 'the gradient of a cast is its output\'s');
  for (const name of ['logp', 'headGrad', 'hiddenGrad'] as const) {
    assert.ok(whole[name].some((v) => v !== 0), `${name} is not all zero`);
    assertClose(windowed[name], whole[name], 1e-6, name);
  }
});

test.run();
