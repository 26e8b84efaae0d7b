// One AdamW step (torch.optim.AdamW) on the elements [offset, offset + n) of each slot's parameter (up to SLOTS
// parameters in one dispatch: kernels/tensor_slots.ts):
//   g = gradScale * grad                     (gradScale: global-norm clipping folded in, 1 without)
//   p *= decayFactor                         (decayFactor = 1 - lr * weightDecay: decoupled decay; 1 for a tensor without)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p -= stepSize * m / (sqrt(v) / bc2Sqrt + eps)   (stepSize = lr / (1 - beta1^t), bc2Sqrt = sqrt(1 - beta2^t))
// The bias corrections come from the host in float64; a dispatch's slots are at one step t. m and v hold only the
// slot's range: index i, not offset + i. The bindings hold f32 elements or vec4f quads of them (tensor_slots.ts
// SlotValue; n and offset then count quads): the arithmetic is the same lane by lane.

struct Slot { n: u32, offset: u32, end: u32, decayFactor: f32 }
struct Params { slots: array<Slot, SLOTS>, beta1: f32, beta2: f32, eps: f32, stepSize: f32, bc2Sqrt: f32, gradScale: f32, perThread: u32 }

{{STORAGE}}
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> params: Params;

// The thread's elements of the slot from index `first`, WG apart.
fn update(grad: Read, param: Write, m: Write, v: Write, first: u32, slot: Slot) {
  for (var k = 0u; k < params.perThread; k++) {
    let i = first + k * WG;
    if (i >= slot.n) { return; }
    let j = slot.offset + i;
    let g = grad[j] * params.gradScale;
    let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[j] = param[j] * slot.decayFactor - params.stepSize * mi / (sqrt(vi) / params.bc2Sqrt + params.eps);
  }
}
