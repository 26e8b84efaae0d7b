// Dropout (inverted: kept elements are scaled by 1 / (1 - p)), deterministic from a (seed, counter, stream) key.
// The mask is not stored: the backward recomputes it with the same kernel on the output gradient, which costs a
// hash per element instead of a mask's memory for as long as the tape holds it.
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { dropoutCall, type DropoutKey } from '../../kernels/dropout.ts';

export interface DropoutOptions extends DropoutKey { p: number }

/** x · mask / (1 - p) with P(mask = 0) = p; p = 0 returns x itself (no dispatch, nothing recorded). */
export function dropout(x: Tensor, opts: DropoutOptions): Tensor {
  const { p, ...key } = opts;
  if (x.dtype !== 'f32') throw new GpuError(`dropout: x must be f32, got ${x.dtype} ${shapeString(x.shape)}`);
  if (!(p >= 0 && p < 1)) throw new GpuError(`dropout: p must be in [0, 1), got ${p}`);
  if (p === 0) return x;
  const masked = (t: Tensor, op: string) => {
    const out = Tensor.empty(t.shape, 'f32', op);
    launch(dropoutCall(deviceLimits(), t.numel, p, key, op, elementwiseShape()), [t], [out]);
    return out;
  };
  const out = masked(x, 'dropout');
  // forward was y = x · mask · s, so dx = dy · mask · s: the same mask, recomputed from the same key.
  record('dropout', [x], [out], [], ([g]) => [masked(g!, 'dropoutBackward')]);
  return out;
}
