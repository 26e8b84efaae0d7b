// GELU (exact, erf-based), SiLU and SwiGLU: elementwise ops whose backward is one fused kernel each.
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import {
  activationBackwardCall, activationCall, gatedActivationBackwardCall, gatedActivationCall, type Activation,
} from '../../kernels/activation.ts';

function requireF32(t: Tensor, op: string, what: string): void {
  if (t.dtype !== 'f32') throw new GpuError(`${op}: ${what} must be f32, got ${t.dtype} ${shapeString(t.shape)}`);
}

/** out = f(x) elementwise, with its backward. */
export function activation(fn: Activation, x: Tensor): Tensor {
  requireF32(x, fn, 'x');
  const out = Tensor.empty(x.shape, 'f32', fn);
  launch(activationCall(deviceLimits(), fn, x.numel, elementwiseShape()), [x], [out]);
  // forward was out = f(x), so dx = dy · f'(x).
  record(fn, [x], [out], [x], ([dy]) => {
    const dx = Tensor.empty(x.shape, 'f32', `${fn}Backward`);
    launch(activationBackwardCall(deviceLimits(), fn, x.numel, elementwiseShape()), [x, dy!], [dx]);
    return [dx];
  });
  return out;
}

/** x · Φ(x), Φ the standard normal CDF (PyTorch's default, approximate='none'). */
export function gelu(x: Tensor): Tensor { return activation('gelu', x); }

/** x · σ(x). */
export function silu(x: Tensor): Tensor { return activation('silu', x); }

/** max(x, 0); its gradient at 0 is 0, as torch's. */
export function relu(x: Tensor): Tensor { return activation('relu', x); }

/** silu(gate) · up, elementwise: the gated MLP of Llama and Mistral. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  requireF32(gate, 'swiglu', 'gate');
  requireF32(up, 'swiglu', 'up');
  if (gate.shape.length !== up.shape.length || gate.shape.some((d, i) => d !== up.shape[i]))
    throw new GpuError(`swiglu: gate ${shapeString(gate.shape)} and up ${shapeString(up.shape)} must have one shape`);
  const n = gate.numel;
  const out = Tensor.empty(gate.shape, 'f32', 'swiglu');
  launch(gatedActivationCall(deviceLimits(), 'silu', n, 'swiglu', elementwiseShape()), [gate, up], [out]);
  // forward was out = silu(gate) · up, so dgate = dy · up · silu'(gate) and dup = dy · silu(gate), in one kernel.
  record('swiglu', [gate, up], [out], [gate, up], ([dy]) => {
    const dgate = Tensor.empty(gate.shape, 'f32', 'swigluBackward');
    const dup = Tensor.empty(up.shape, 'f32', 'swigluBackward');
    launch(gatedActivationBackwardCall(deviceLimits(), 'silu', n, 'swiglu', elementwiseShape()), [gate, up, dy!], [dgate, dup]);
    return [dgate, dup];
  });
  return out;
}
