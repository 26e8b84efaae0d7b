// One RMSprop step (torch.optim.RMSprop: no momentum, not centered) on the elements [offset, offset + n) of a parameter:
//   g = gradScale * grad + weightDecay * p   (coupled decay, as torch adds it to the gradient; gradScale: clipping)
//   v = alpha * v + (1 - alpha) * g^2        (square_avg)
//   p -= lr * g / (sqrt(v) + eps)
// v holds only this range: index i, not offset + i.
override WG: u32 = 256u;

struct Params { n: u32, offset: u32, alpha: f32, eps: f32, lr: f32, weightDecay: f32, gradScale: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let j = params.offset + i;
  let p = param[j];
  let g = grad[j] * params.gradScale + params.weightDecay * p;
  let vi = params.alpha * v[i] + (1.0 - params.alpha) * g * g;
  v[i] = vi;
  param[j] = p - params.lr * g / (sqrt(vi) + params.eps);
}
