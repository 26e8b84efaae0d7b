// Mixed precision's f16 copies: castF16 (f32 -> f16 storage on the tape, the gradient passed through in f32), which
// the models' products take inside autocast (engine/autodiff.ts), and the per-step cache of the weights' copies
// (train/step.ts opens it).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, launchInWindows } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { castF16Call } from '../../kernels/cast_f16.ts';

/**
 * x f32 as f16 storage (round to nearest even, overflow to ±inf), same shape. Forward was y = f16(x), whose
 * derivative is taken as 1: the f32 gradient of y is x's, so an f32 master weight receives its gradient. Inside
 * withF16WeightCopies a weight is cast once (charged as castF16Weight) and every use gets a view of that copy, each
 * use its own tape node.
 */
export function castF16(x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new GpuError(`castF16 ${x.dtype} ${shapeString(x.shape)}: expected f32`);
  const copies = weightCopies?.weights.has(x) ? weightCopies.copies : null;
  let out: Tensor;
  if (copies) {
    let copy = copies.get(x);
    if (!copy) copies.set(x, (copy = castInWindows(x, 'castF16Weight').keep()));
    out = copy.reshape(x.shape); // the caller's view: disposing it leaves the cached copy
  } else out = castInWindows(x, 'castF16');
  record('castF16', [x], [out], [], ([g]) => [g!.reshape(x.shape)]);
  return out;
}

// Windows of whole 128-element blocks: 512 bytes of x and 256 of the copy, so that both views start on any
// storage offset alignment WebGPU allows (256 bytes at most), and every window but the last holds whole words.
const BLOCK = 128;

/** The f16 copy of x, window by window when x or the copy exceeds one binding. */
function castInWindows(x: Tensor, op: string): Tensor {
  const out = Tensor.empty(x.shape, 'f16', op);
  launchInWindows(x.numel, [x], [out], (n) => castF16Call(deviceLimits(), n, op), BLOCK);
  return out;
}

/** The open cache: the step's weights, and the f16 copy of each one cast so far. */
let weightCopies: { weights: ReadonlySet<Tensor>; copies: Map<Tensor, Tensor> } | null = null;

/**
 * Runs fn (one optimizer step's micro-batches, their backwards and replayed layers) with each of `weights` cast at
 * most once: later casts of the same tensor reuse its copy, bit for bit what a new cast would give. The copies are
 * disposed when fn returns or throws, before anything (the optimizer) can change the weights.
 */
export function withF16WeightCopies<T>(weights: Iterable<Tensor>, fn: () => T): T {
  const outer = weightCopies;
  // Weights are named by the caller, not guessed: a frozen trunk's activations and backward gradients are leaves too.
  const scope = { weights: new Set(weights), copies: new Map<Tensor, Tensor>() };
  weightCopies = scope;
  try {
    return fn();
  } finally {
    weightCopies = outer;
    for (const copy of scope.copies.values()) copy.dispose();
  }
}
