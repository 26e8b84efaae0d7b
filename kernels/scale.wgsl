// out = alpha · x elementwise (alpha = 1: a copy), element i with no index arithmetic. VALUE is f32, or vec4f where
// the count is a multiple of 4.
override WG: u32 = 256u;

struct Params { n: u32, alpha: f32 } // n VALUEs

@group(0) @binding(0) var<storage, read> x: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{VALUE}}>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < params.n) { out[i] = params.alpha * x[i]; }
}
