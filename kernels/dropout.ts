// Inverted dropout with a counter-based hash: the mask is recomputed from (seed, counter, stream, index), never
// stored, so forward and backward are the same kernel (on x, then on the output gradient).
import { ELEMENTWISE_SHAPES, elementwiseLaunch, KernelError, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const dropoutKernel: Kernel = {
  name: 'dropout',
  source: wgsl(import.meta.url, 'dropout.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: ['x'],
  outputs: ['y'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['seed', 'u32'], ['counter', 'u32'], ['stream', 'u32'], ['threshold', 'u32'], ['scale', 'f32']],
  constants: ['WG'],
};

/** Where the mask comes from: a run's seed, a counter that the trainer advances (per micro-batch), a stream per call site. */
export interface DropoutKey { seed: number; counter: number; stream: number }

/** The 24-bit draw below which an element is dropped: P(drop) = threshold / 2^24 ≈ p. */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new KernelError(`dropout probability must be in [0, 1), got ${p}`);
  return Math.round(p * 2 ** 24);
}

export function dropoutCall(limits: DeviceLimits, n: number, p: number, key: DropoutKey, op = 'dropout', shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  for (const [k, v] of Object.entries(key)) if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 32)) throw new KernelError(`dropout ${k} must be a u32, got ${v}`);
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: dropoutKernel, op, constants,
    params: { n, perThread, seed: key.seed, counter: key.counter, stream: key.stream, threshold: dropoutThreshold(p), scale: 1 / (1 - p) },
    workgroups,
    // The hash is ~20 integer operations per element; the ledger counts the one multiply.
    cost: { flops: n, bytesRead: 4 * n, bytesWritten: 4 * n },
  };
}

/** PCG4D of dropout.wgsl on the host, for tests: the first output word. */
export function pcg4d(x: number, y: number, z: number, w: number): number {
  const v = [x, y, z, w].map((a) => (Math.imul(a >>> 0, 1664525) + 1013904223) >>> 0);
  const mix = () => {
    v[0] = (v[0] + Math.imul(v[1], v[3])) >>> 0; v[1] = (v[1] + Math.imul(v[2], v[0])) >>> 0;
    v[2] = (v[2] + Math.imul(v[0], v[1])) >>> 0; v[3] = (v[3] + Math.imul(v[1], v[2])) >>> 0;
  };
  mix();
  for (let k = 0; k < 4; k++) v[k] = (v[k] ^ (v[k] >>> 16)) >>> 0;
  mix();
  return v[0];
}

/** The host reference of the mask: whether element i is kept. */
export function dropoutKeeps(i: number, p: number, key: DropoutKey): boolean {
  return pcg4d(i, key.stream, key.counter, key.seed) >>> 8 >= dropoutThreshold(p);
}
