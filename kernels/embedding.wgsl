// out[t, c] = weight[ids[t], c]: one thread per output element. Ids outside [0, vocab) read nothing and give 0.
override WG: u32 = 256u;

struct Params { n: u32, cols: u32, vocab: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let id = ids[i / params.cols];
  var v = 0.0;
  if (id >= 0 && u32(id) < params.vocab) { v = weight[u32(id) * params.cols + i % params.cols]; }
  out[i] = v;
}
