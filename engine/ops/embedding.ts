// Token embedding: a gather of rows, and its backward as a deterministic scatter-add (no float atomics).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { bindingWindows, byDevice, deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString, tidy } from '../tensor.ts';
import { EMBEDDING_BACKWARD_THREADS, embeddingBackwardCall, embeddingCall, embeddingOrderCall } from '../../kernels/embedding.ts';
import { bytesPerElement, isFloatDType, type FloatDType } from '../../kernels/dtype.ts';
import { fillCall } from '../../kernels/fill.ts';

/**
 * weight[ids] : ids i32 [...], weight [V, C] -> f32 [..., C]. Ids outside [0, V) give zero rows and no gradient
 * (the kernels cannot report them without a read-back, so they skip them). The weight may be stored as f16 or
 * bf16 (a frozen table: it gets no gradient).
 */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  if (ids.dtype !== 'i32') throw new GpuError(`embedding: ids must be i32, got ${ids.dtype} ${shapeString(ids.shape)}`);
  if (!isFloatDType(weight.dtype) || weight.rank !== 2)
    throw new GpuError(`embedding: weight must be f32, f16 or bf16 [vocab, cols], got ${weight.dtype} ${shapeString(weight.shape)}`);
  // There is no 16-bit gradient or update: 16-bit storage holds tables that stay fixed (a frozen base model).
  if (weight.dtype !== 'f32' && weight.requiresGrad)
    throw new GpuError(`embedding: weight ${shapeString(weight.shape)} is ${weight.dtype} with requiresGrad set; 16-bit tensors are frozen (no gradient): keep a trained table in f32`);
  const [vocab, cols] = weight.shape;
  const tokens = ids.numel;
  const out = Tensor.empty([...ids.shape, cols], 'f32', 'embedding');
  // A table larger than one binding is read window by window (rows of a window: ids in it).
  const dtype = weight.dtype as FloatDType;
  const windows = bindingWindows(vocab, bytesPerElement(dtype) * cols);
  const part = (t: Tensor, w: { first: number; count: number }) => (windows.length === 1 ? t : t.rows(w.first, w.count));
  for (const w of windows) tidy(() => launch(embeddingCall(deviceLimits(), tokens, vocab, cols, dtype, { first: w.first, rows: w.count }, elementwiseShape()), [ids, part(weight, w)], [out]));
  // forward was out[t] = weight[ids[t]], so dweight[v] = Σ_{t : ids[t] = v} dout[t], summed in token order.
  record('embedding', [ids, weight], [out], [ids], ([dout]) => {
    const dweight = Tensor.empty([vocab, cols], 'f32', 'embeddingBackward');
    const order = Tensor.empty([tokens], 'u32', 'embedding order');
    const threads = byDevice(EMBEDDING_BACKWARD_THREADS);
    launch(embeddingOrderCall(deviceLimits(), tokens), [ids], [order]);
    for (const w of bindingWindows(vocab, 4 * cols)) {
      tidy(() => {
        const rows = w.count === vocab ? dweight : dweight.rows(w.first, w.count);
        launch({ ...fillCall(deviceLimits(), w.count * cols, 0, elementwiseShape()), op: 'embeddingBackward' }, [], [rows]); // rows of absent ids stay 0
        launch(embeddingBackwardCall(deviceLimits(), tokens, vocab, cols, { first: w.first, rows: w.count }, threads), [ids, order, dout!], [rows]);
      });
    }
    return [null, dweight];
  });
  return out;
}
