// Mixed precision's f16 copies: castF16 (f32 -> f16 storage on the tape, the gradient passed through in f32) and
// the autocast scope in which the models' products read such copies (torch.autocast's role; models/lora.ts
// projections and CausalLM's head read it).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { castF16Call } from '../../kernels/cast_f16.ts';

/**
 * x f32 as f16 storage (round to nearest even, overflow to ±inf), same shape. Forward was y = f16(x), whose
 * derivative is taken as 1: the f32 gradient of y is x's, so an f32 master weight receives its gradient.
 */
export function castF16(x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new GpuError(`castF16 ${x.dtype} ${shapeString(x.shape)}: expected f32`);
  const out = Tensor.empty(x.shape, 'f16', 'castF16');
  launch(castF16Call(deviceLimits(), x.numel), [x], [out]);
  record('castF16', [x], [out], [], ([g]) => [g!.reshape(x.shape)]);
  return out;
}

let autocastDepth = 0;

/** Runs fn with the models' products on f16 copies of their f32 operands (see autocastF16). */
export function autocast<T>(fn: () => T): T {
  autocastDepth++;
  try { return fn(); } finally { autocastDepth--; }
}

/**
 * True inside autocast: a model's products cast their f32 operands (weights, activations) with castF16. Read once
 * per forward, so that a checkpointed layer replayed in the backward (outside the scope) casts as its forward did.
 */
export function autocastF16(): boolean { return autocastDepth > 0; }
