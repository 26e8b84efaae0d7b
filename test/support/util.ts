// Shared test helpers: seeded random data, float64 comparisons, finite differences.
import * as assert from 'uvu/assert';
import { initGpu } from '../../engine/gpu.ts';
import { Tensor } from '../../engine/tensor.ts';
import { rng as random } from '../../engine/random.ts';
import { relativeError } from '../../train/verify.ts';

export { initGpu };

/** A seeded uniform generator on [0, 1). */
export function rng(seed: number): () => number { return random(seed).next; }

/** n standard normal values (Box-Muller), rounded to f32 so that CPU references see exactly the GPU's inputs. */
export function randn(n: number, seed: number, std = 1): Float64Array {
  const r = random(seed);
  return Float64Array.from({ length: n }, () => Math.fround(std * r.normal()));
}

export function randInt(n: number, hi: number, seed: number): Int32Array {
  const r = random(seed);
  return Int32Array.from({ length: n }, () => r.int(hi));
}

/** ‖ours − ref‖ / ‖ref‖ (absolute norm when ref is zero), as `juice verify` reports it; lengths must agree. */
export function relErr(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (ours.length !== ref.length) throw new Error(`length ${ours.length} vs reference ${ref.length}`);
  return relativeError(ours, ref);
}

export function assertClose(ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(ours, ref);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(3)} > ${tol}`);
}

export function upload(data: ArrayLike<number>, shape: number[], requiresGrad = false): Tensor {
  const t = Tensor.fromArray(data, shape);
  t.requiresGrad = requiresGrad;
  return t;
}

export async function download(t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.toArray());
}

/**
 * Central finite differences of a scalar float64 function f at x, for the given indices
 * (all when omitted): the oracle that CPU reference gradients are checked against.
 */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6, indices?: number[]): Float64Array {
  const g = new Float64Array(x.length);
  for (const i of indices ?? x.keys()) {
    const old = x[i];
    x[i] = old + h; const fp = f(x);
    x[i] = old - h; const fm = f(x);
    x[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** ⟨g, r⟩ for a fixed random r: reduces an output to a scalar loss for gradient checks. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
