// loss = (sum of the per-row losses) / count, and 0 when every target is ignored (count = 0).
// One workgroup: strided partial sums, then a tree sum: a fixed order, so the loss is deterministic.
override WG: u32 = 256u;

struct Params { rows: u32 }

@group(0) @binding(0) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(1) var<storage, read> count: array<u32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var r = lid; r < params.rows; r += WG) { s += rowLoss[r]; }
  partial[lid] = s;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
  }
  if (lid == 0u) {
    let c = count[0];
    loss[0] = select(partial[0] / f32(c), 0.0, c == 0u);
  }
}
