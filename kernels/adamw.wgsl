// One AdamW step (torch.optim.AdamW) on the elements [offset, offset + n) of a parameter:
//   g = gradScale * grad                     (gradScale: global-norm clipping folded in, 1 without)
//   p *= decayFactor                         (decayFactor = 1 - lr * weightDecay: decoupled decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p -= stepSize * m / (sqrt(v) / bc2Sqrt + eps)   (stepSize = lr / (1 - beta1^t), bc2Sqrt = sqrt(1 - beta2^t))
// The bias corrections come from the host in float64. m and v hold only this range: index i, not offset + i.
override WG: u32 = 256u;

struct Params { n: u32, offset: u32, beta1: f32, beta2: f32, eps: f32, decayFactor: f32, stepSize: f32, bc2Sqrt: f32, gradScale: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let j = params.offset + i;
  let g = grad[j] * params.gradScale;
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[j] = param[j] * params.decayFactor - params.stepSize * mi / (sqrt(vi) / params.bc2Sqrt + params.eps);
}
