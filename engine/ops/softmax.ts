// Softmax along the last dim, with its backward fused into one kernel.
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { softmaxBackwardCall, softmaxCall } from '../../kernels/softmax.ts';

/** exp(x - max) / Σ exp(x - max) along the last dim, in f32. -inf entries get 0; a row entirely -inf gives NaN, as in PyTorch. */
export function softmax(x: Tensor): Tensor {
  if (x.dtype !== 'f32' || x.rank === 0) throw new GpuError(`softmax: x must be an f32 tensor of rank >= 1, got ${x.dtype} ${shapeString(x.shape)}`);
  const cols = x.shape[x.rank - 1];
  const rows = cols === 0 ? 0 : x.numel / cols;
  const y = Tensor.empty(x.shape, 'f32', 'softmax');
  launch(softmaxCall(deviceLimits(), rows, cols), [x], [y]);
  // forward was y = softmax(x), so dx = y · (dy - Σ dy·y) along the last dim.
  record('softmax', [x], [y], [y], ([dy]) => {
    const dx = Tensor.empty(x.shape, 'f32', 'softmaxBackward');
    launch(softmaxBackwardCall(deviceLimits(), rows, cols), [y, dy!], [dx]);
    return [dx];
  });
  return y;
}
