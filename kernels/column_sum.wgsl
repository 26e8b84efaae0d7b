// out[j] = sum over p of partials[p, j], adding p = 0, 1, 2, ... in order: the deterministic second
// stage of the norms' weight gradients (partials [blocks, cols] from their backward kernels).
override WG: u32 = 256u;

struct Params { blocks: u32, cols: u32 }

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = gid.x + gid.y * nwg.x * WG;
  if (j >= params.cols) { return; }
  var acc = 0.0;
  for (var p = 0u; p < params.blocks; p++) { acc += partials[p * params.cols + j]; }
  out[j] = acc;
}
