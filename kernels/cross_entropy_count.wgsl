// count[0] = number of targets != ignoreIndex: the denominator of the mean cross-entropy, kept on the GPU.
// One workgroup: each thread counts a strided slice, then a tree sum in a fixed order.
override WG: u32 = 256u;

struct Params { rows: u32, ignoreIndex: i32 }

@group(0) @binding(0) var<storage, read> targets: array<i32>;
@group(0) @binding(1) var<storage, read_write> count: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> partial: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var c = 0u;
  for (var r = lid; r < params.rows; r += WG) {
    c += select(1u, 0u, targets[r] == params.ignoreIndex);
  }
  partial[lid] = c;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
  }
  if (lid == 0u) { count[0] = partial[0]; }
}
