// Runs a kernel call on tensors: the bridge between op code (tensors) and the runtime (buffer ranges).
import { gpu, GpuError, type Gpu } from './gpu.ts';
import { dispatch, type Binding } from './runtime.ts';
import { shapeString, tidy, type Tensor } from './tensor.ts';
import { deviceLimitsOf, ELEMENTWISE_SHAPES, gcd, LOGIT_ROW_THREADS, ROW_REDUCTION_SHAPES, type DeviceLimits, type ElementwiseShape, type KernelCall, type RowReductionShape } from '../kernels/spec.ts';

/** Inputs then outputs, in the kernel's binding order; null for one the kernel variant leaves out (absent). */
export function launch(call: KernelCall, inputs: (Tensor | null)[], outputs: (Tensor | null)[]): void {
  const { maxStorageBufferBindingSize: maxBinding, minStorageBufferOffsetAlignment: align } = gpu().limits;
  const ins = inputs.map((t, i) => bindingOf(call, t, call.kernel.inputs[i], maxBinding, align));
  const outs = outputs.map((t, i) => bindingOf(call, t, call.kernel.outputs[i], maxBinding, align));
  dispatch(call, ins, outs);
}

/** The buffer range binding `name` of the call reads or writes: within one binding and on the offset alignment. */
function bindingOf(call: KernelCall, t: Tensor | null, name: string | undefined, maxBinding: number, align: number): Binding | null {
  if (!t) return null;
  const b = t.binding();
  if (b.size <= maxBinding && b.offset % align === 0) return b;
  const tensor = `${t.name ? `'${t.name}' ` : ''}${t.dtype} ${shapeString(t.shape)}`;
  throw new GpuError(b.size > maxBinding
    ? `op '${call.op ?? call.kernel.name}': binding '${name}' is tensor ${tensor} of ${b.size} bytes, more than one binding holds (maxStorageBufferBindingSize ${maxBinding}); this op does not take it in windows`
    : `op '${call.op ?? call.kernel.name}': binding '${name}' (tensor ${tensor}) starts at byte ${b.offset}, not a multiple of minStorageBufferOffsetAlignment ${align}`);
}

/**
 * Windows [first, first + count) over `rows` rows of rowBytes bytes each, each window within one storage binding
 * and starting on the offset alignment (the device's; 256 bytes at most in WebGPU): how the ops that take tensors
 * larger than one binding (embeddings, the LM head, gradients and optimizer states) split them. One window when
 * the whole fits.
 */
export function bindingWindows(rows: number, rowBytes: number): { first: number; count: number }[] {
  const { maxStorageBufferBindingSize: maxBinding, minStorageBufferOffsetAlignment: align } = gpu().limits;
  if (rows * rowBytes <= maxBinding) return [{ first: 0, count: rows }];
  // A multiple of `step` rows starts every window on the alignment.
  const step = align / gcd(align, rowBytes);
  const count = Math.floor(maxBinding / rowBytes / step) * step;
  if (count === 0) throw new GpuError(`bindingWindows: a row of ${rowBytes} bytes (${step} rows a window at least) exceeds one binding (${maxBinding} bytes)`);
  const windows: { first: number; count: number }[] = [];
  for (let first = 0; first < rows; first += count) windows.push({ first, count: Math.min(count, rows - first) });
  return windows;
}

/**
 * An elementwise kernel over numel elements of equal-length tensors, in windows of one binding each (bindingWindows
 * over blocks of `block` elements of 4 bytes: a block of 128 also starts a 16-bit tensor's window on any alignment).
 */
export function launchInWindows(numel: number, inputs: Tensor[], outputs: Tensor[], callFor: (n: number) => KernelCall, block = 1): void {
  const windows = bindingWindows(Math.ceil(numel / block), 4 * block);
  if (windows.length === 1) return launch(callFor(numel), inputs, outputs);
  const view = (t: Tensor, first: number, count: number) => t.reshape([-1]).rows(first, count);
  for (const w of windows) {
    const first = w.first * block, count = Math.min(w.count * block, numel - first);
    tidy(() => launch(callFor(count), inputs.map((t) => view(t, first, count)), outputs.map((t) => view(t, first, count))));
  }
}

/**
 * This device's entry of a per-device table ({ gpu, cpu }: ELEMENTWISE_SHAPES, SQUARED_SUM_SHAPES, ...): the cpu one
 * where the device is this machine's CPU (a CPU driver runs a workgroup's invocations as SIMD lanes of few fibers).
 */
export function byDevice<G, C>(table: { readonly gpu: G; readonly cpu: C }): G | C { return gpu().onHostCpu ? table.cpu : table.gpu; }

/** The elementwise kernels' workgroup shape on this device: more elements a thread on a CPU driver (ELEMENTWISE_SHAPES). */
export function elementwiseShape(): ElementwiseShape { return byDevice(ELEMENTWISE_SHAPES); }

/** This device's shape of the norms' row reductions (kernels/spec.ts ROW_REDUCTION_SHAPES). */
export function rowReductionShape(): RowReductionShape { return byDevice(ROW_REDUCTION_SHAPES); }

/** This device's most threads a row of logits (kernels/spec.ts LOGIT_ROW_THREADS). */
export function logitRowThreads(): number { return byDevice(LOGIT_ROW_THREADS); }

const limitsOf = new WeakMap<Gpu, DeviceLimits>();

/** This device's limits as the kernel specs read them (their calls take them as an argument). */
export function deviceLimits(): DeviceLimits {
  const g = gpu();
  let limits = limitsOf.get(g);
  if (!limits) limitsOf.set(g, (limits = deviceLimitsOf(g.limits)));
  return limits;
}
