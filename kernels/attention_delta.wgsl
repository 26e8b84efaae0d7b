// delta[row] = Σ_d dO[row, d] · O[row, d], the first step of the attention backward: with P = softmax(S) per row,
// dS = P ∘ (dP - delta) because Σ_j P_j dP_j = Σ_j P_j (dO · v_j) = dO · O. One thread per query row.
override D: u32;
override WG: u32 = 64u;

struct Params { rows: u32 }

@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * WG;
  if (row >= params.rows) { return; }
  var sum = 0.0;
  for (var d = 0u; d < D; d++) { sum = fma(dout[row * D + d], out[row * D + d], sum); }
  delta[row] = sum;
}
