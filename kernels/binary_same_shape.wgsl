// out = a (op) b for two operands of out's shape: element i of each, with none of binary.wgsl's index division
// and modulo (lavapipe has no vector integer divide). VALUE is f32, or vec4f where the count is a multiple of 4.
// binaryOp (OP) comes from binary_op.wgsl.
override WG: u32 = 256u;

struct Params { n: u32 } // VALUEs

@group(0) @binding(0) var<storage, read> a: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read> b: array<{{VALUE}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{VALUE}}>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < params.n) { out[i] = binaryOp(a[i], b[i]); }
}
