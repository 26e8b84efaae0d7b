// Log-probability of each token given the tokens before it, from next-token logits [B, T, V]: one workgroup
// per token (b, t).
//   logp[b, t] = x[b, t - 1, ids[b, t]] - lse[b, t],   lse[b, t] = logsumexp(x[b, t - 1, :]),   for t >= 1;
//   logp[b, 0] = lse[b, 0] = 0: the first token has no prediction.
// The row's logsumexp comes from rowMaxSum (row_logsumexp.wgsl), which reads the row once.
// An id outside [0, V) gives NaN.
override WG: u32 = 256u;

struct Params { tokens: u32, T: u32, V: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> logp: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let token = wid.x + wid.y * nwg.x;
  if (token >= params.tokens) { return; }
  if (token % params.T == 0u) {
    if (lid == 0u) { logp[token] = 0.0; lse[token] = 0.0; }
    return;
  }
  let V = params.V;
  let base = (token - 1u) * V; // the logits of the previous position predict this token

  let maxSum = rowMaxSum(base, V, lid); // row_logsumexp.wgsl
  if (lid == 0u) {
    let rowLse = maxSum.x + log(maxSum.y);
    let id = ids[token];
    var nanBits = 0x7fc00000u; // a runtime NaN: a constant one is rejected by WGSL
    let inRange = id >= 0 && u32(id) < V;
    logp[token] = select(bitcast<f32>(nanBits), logits[base + select(0u, u32(id), inRange)] - rowLse, inRange);
    lse[token] = rowLse;
  }
}
