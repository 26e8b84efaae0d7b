// One RMSprop step (torch.optim.RMSprop: no momentum, not centered) on the elements [offset, offset + n) of each
// slot's parameter (up to SLOTS parameters in one dispatch: kernels/tensor_slots.ts):
//   g = gradScale * grad + weightDecay * p   (coupled decay, as torch adds it to the gradient; gradScale: clipping)
//   v = alpha * v + (1 - alpha) * g^2        (square_avg)
//   p -= lr * g / (sqrt(v) + eps)
// v holds only the slot's range: index i, not offset + i.

struct Slot { n: u32, offset: u32, end: u32, weightDecay: f32 }
struct Params { slots: array<Slot, SLOTS>, alpha: f32, eps: f32, lr: f32, gradScale: f32, perThread: u32 }

{{STORAGE}}
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> params: Params;

// The thread's elements of the slot from index `first`, WG apart.
fn update(grad: Read, param: Write, v: Write, first: u32, slot: Slot) {
  for (var k = 0u; k < params.perThread; k++) {
    let i = first + k * WG;
    if (i >= slot.n) { return; }
    let j = slot.offset + i;
    let p = param[j];
    let g = grad[j] * params.gradScale + slot.weightDecay * p;
    let vi = params.alpha * v[i] + (1.0 - params.alpha) * g * g;
    v[i] = vi;
    param[j] = p - params.lr * g / (sqrt(vi) + params.eps);
  }
}
