// Broadcasting arithmetic, fill, accumulation and reductions to a shape: ops with forward, backward and cost.
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { binaryCall, type BinaryOp } from '../../kernels/binary.ts';
import { fillCall } from '../../kernels/fill.ts';
import { accumulateCall } from '../../kernels/accumulate.ts';
import { reduceSumCall } from '../../kernels/reduce_sum.ts';
import { scaleCall } from '../../kernels/scale.ts';

/** numpy broadcasting: align right; each dim equal or 1. */
export function broadcastShape(a: readonly number[], b: readonly number[], op = 'broadcast'): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new GpuError(`${op}: shapes ${shapeString(a)} and ${shapeString(b)} do not broadcast`);
    out.push(Math.max(x, y));
  }
  return out;
}

/** Pads a shape on the left with ones to rank 4, merging leading dims when the rank is higher. */
export function toRank4(shape: readonly number[]): number[] {
  const s = [...shape];
  while (s.length > 4) s.splice(0, 2, s[0] * s[1]);
  while (s.length < 4) s.unshift(1);
  return s;
}

/** Element strides of `shape` seen through the broadcast `outShape` (0 along broadcast dims), rank 4. */
function broadcastStrides(shape: readonly number[], outShape: readonly number[], op: string): number[] {
  const out4 = toRank4(outShape);
  const padded = [...Array(outShape.length - shape.length).fill(1), ...shape];
  if (outShape.length > 4) {
    // Leading dims are merged: valid when the operand has all of them or none of them.
    const lead = outShape.length - 3;
    const all = padded.slice(0, lead).every((d, k) => d === outShape[k]);
    const none = padded.slice(0, lead).every((d) => d === 1);
    if (!all && !none) throw new GpuError(`${op}: broadcasting ${shapeString(shape)} to ${shapeString(outShape)} over more than 4 dims is not supported`);
  }
  const s4 = toRank4(padded);
  const strides = [0, 0, 0, 0];
  let acc = 1;
  for (let k = 3; k >= 0; k--) {
    strides[k] = s4[k] === 1 && out4[k] !== 1 ? 0 : acc;
    acc *= s4[k];
  }
  return strides;
}

/** a (op) b broadcast to `shape` (their broadcast shape unless given: then each must broadcast to it). */
function binary(op: BinaryOp, a: Tensor, b: Tensor, shape: readonly number[] = broadcastShape(a.shape, b.shape, op)): Tensor {
  const out = Tensor.empty(shape, 'f32', op);
  launch(binaryCall(deviceLimits(), op, toRank4(shape), broadcastStrides(a.shape, shape, op), broadcastStrides(b.shape, shape, op), a.numel, b.numel, elementwiseShape()), [a, b], [out]);
  return out;
}

/** The gradient g of a broadcast result, summed back to `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.numel === shapeNumel(shape)) return g.reshape(shape);
  const padded = [...Array(g.shape.length - shape.length).fill(1), ...shape];
  const out = Tensor.empty(shape, 'f32', 'sumTo');
  launch(reduceSumCall(deviceLimits(), toRank4(g.shape), toRank4(padded), 1, 'sumTo', elementwiseShape()), [g], [out]);
  return out;
}

function shapeNumel(s: readonly number[]): number { return s.reduce((a, b) => a * b, 1); }

export function add(a: Tensor, b: Tensor): Tensor {
  const out = binary('add', a, b);
  record('add', [a, b], [out], [], ([g]) => [sumTo(g!, a.shape), sumTo(g!, b.shape)]);
  return out;
}

export function sub(a: Tensor, b: Tensor): Tensor {
  const out = binary('sub', a, b);
  record('sub', [a, b], [out], [], ([g]) => [sumTo(g!, a.shape), b.requiresGrad ? sumTo(scale(g!, -1), b.shape) : null]);
  return out;
}

export function mul(a: Tensor, b: Tensor): Tensor {
  const out = binary('mul', a, b);
  // forward was out = a * b, so da = g * b and db = g * a (summed over broadcast dims).
  record('mul', [a, b], [out], [a, b], ([g]) => [
    a.requiresGrad ? sumTo(binary('mul', g!, b), a.shape) : null,
    b.requiresGrad ? sumTo(binary('mul', g!, a), b.shape) : null,
  ]);
  return out;
}

export function div(a: Tensor, b: Tensor): Tensor {
  const out = binary('div', a, b);
  // forward was out = a / b, so da = g / b and db = -g * out / b.
  record('div', [a, b], [out], [b, out], ([g]) => [
    a.requiresGrad ? sumTo(binary('div', g!, b), a.shape) : null,
    b.requiresGrad ? sumTo(scale(binary('div', binary('mul', g!, out), b), -1), b.shape) : null,
  ]);
  return out;
}

/** alpha * x, element for element. */
export function scale(x: Tensor, alpha: number): Tensor {
  const out = Tensor.empty(x.shape, 'f32', 'scale');
  launch(scaleCall(deviceLimits(), x.numel, alpha, 'scale', elementwiseShape()), [x], [out]);
  record('scale', [x], [out], [], ([g]) => [scale(g!, alpha)]);
  return out;
}

/** Sum over the last dim, keeping it as size 1 when keepDim. */
export function sumLastDim(x: Tensor, keepDim = false, alpha = 1, op = 'sum'): Tensor {
  const outShape = [...x.shape.slice(0, -1), 1];
  const out = Tensor.empty(keepDim ? outShape : x.shape.slice(0, -1), 'f32', op);
  launch(reduceSumCall(deviceLimits(), toRank4(x.shape), toRank4(outShape), alpha, op, elementwiseShape()), [x], [out]);
  // forward was out = alpha * sum_j x[..., j], so dx[..., j] = alpha * g[...]: one broadcast of both to x's shape.
  record(op, [x], [out], [], ([g]) => [binary('mul', Tensor.scalar(alpha), g!.reshape(outShape), x.shape)]);
  return out;
}

export function meanLastDim(x: Tensor, keepDim = false): Tensor {
  return sumLastDim(x, keepDim, 1 / x.shape[x.shape.length - 1], 'mean');
}

export function fill(shape: readonly number[], value: number): Tensor {
  const out = Tensor.empty(shape, 'f32', 'fill');
  launch(fillCall(deviceLimits(), out.numel, value, elementwiseShape()), [], [out]);
  return out;
}

/** acc += x in place (no tape): gradient accumulation. */
export function addInto(acc: Tensor, x: Tensor): void {
  if (acc.numel !== x.numel) throw new GpuError(`addInto: ${shapeString(x.shape)} into ${shapeString(acc.shape)}`);
  launch(accumulateCall(deviceLimits(), acc.numel, elementwiseShape()), [x], [acc]);
}
