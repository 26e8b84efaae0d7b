// Composed attention, the oracle of the fused kernels: the same function built from ops (matmul, scale, a
// mask kernel, softmax), differentiable through the tape, materialising the [B, H, T, S] scores.
//
// GQA by reshaping: the G = H / KVH query heads of a kv head are consecutive, so q [B, H, T, D] is the view
// [B, KVH, G·T, D], and one batched product per kv head scores all of them; the mask takes row r's query
// position from t = r % T.
import { record } from '../autodiff.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor } from '../tensor.ts';
import { scale } from './elementwise.ts';
import { matmul } from './matmul.ts';
import { reshape } from './shape.ts';
import { softmax } from './softmax.ts';
import { attentionSetup, type AttentionOptions } from './attention.ts';
import { attentionMaskCall, MASK_FILL } from '../../kernels/attention_mask.ts';
import type { AttentionMask } from '../../kernels/attention_forward.ts';

/** x [B, KVH, G·T, S] with invisible entries replaced by the fill; the gradient passes where visible. */
function attentionMaskOp(x: Tensor, T: number, mask: AttentionMask, keyRange: Tensor | null, fillBits: number): Tensor {
  const [B, KVH, rows, S] = x.shape;
  const out = Tensor.empty(x.shape, 'f32', 'attentionMask');
  const n = B * KVH * rows * S;
  launch(attentionMaskCall(deviceLimits(), n, T, S, KVH * rows, mask, fillBits), [x, keyRange], [out]);
  // forward kept x where visible, so the gradient is g where visible and 0 elsewhere.
  record('attentionMask', [x], [out], keyRange ? [keyRange] : [], ([g]) => {
    const dx = Tensor.empty(x.shape, 'f32', 'attentionMaskBackward');
    launch(attentionMaskCall(deviceLimits(), n, T, S, KVH * rows, mask, MASK_FILL.zero, 'attentionMaskBackward'), [g!, keyRange], [dx]);
    return [dx];
  });
  return out;
}

/** softmax(Q Kᵀ·scale + mask) V from ops; rows that see no key give 0, as the fused kernel does. */
export function attentionComposed(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { dims, mask, scale: s, keyRange } = attentionSetup(q, k, v, opts, 'f32');
  const { B, H, KVH, T, D } = dims;
  const G = H / KVH;
  const grouped = reshape(q, [B, KVH, G * T, D]);
  const scores = attentionMaskOp(scale(matmul(grouped, k, { transB: true }), s), T, mask, keyRange, MASK_FILL.negativeInfinity);
  // A row without a visible key is all -inf, which softmax turns into NaN; the second mask makes it 0.
  const probs = attentionMaskOp(softmax(scores), T, mask, keyRange, MASK_FILL.zero);
  return reshape(matmul(probs, v), [B, H, T, D]);
}
