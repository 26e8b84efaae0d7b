// ReLU: max(x, 0) elementwise, with its backward as one kernel.
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { reluBackwardCall, reluCall } from '../../kernels/relu.ts';

export function relu(x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new GpuError(`relu: x must be f32, got ${x.dtype} ${shapeString(x.shape)}`);
  const out = Tensor.empty(x.shape, 'f32', 'relu');
  launch(reluCall(deviceLimits(), x.numel), [x], [out]);
  // forward was out = max(x, 0), so dx = dy · [x > 0].
  record('relu', [x], [out], [x], ([dy]) => {
    const dx = Tensor.empty(x.shape, 'f32', 'reluBackward');
    launch(reluBackwardCall(deviceLimits(), x.numel), [x, dy!], [dx]);
    return [dx];
  });
  return out;
}
