// Backward of softmax.wgsl: forward was y = softmax(x) along rows, so dx = y · (dy - Σ dy·y) per row.
// One workgroup per row: a tree reduction of the row's dot product, then one pass writing dx.
override WG: u32 = 256u; // a power of two

struct Params { rows: u32, cols: u32 }

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partialDot: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var d = 0.0;
  for (var j = lid; j < params.cols; j += WG) { d += dy[base + j] * y[base + j]; }
  partialDot[lid] = d;
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    workgroupBarrier();
    if (lid < stride) { partialDot[lid] += partialDot[lid + stride]; }
  }
  workgroupBarrier();
  let rowDot = partialDot[0];
  for (var j = lid; j < params.cols; j += WG) { dx[base + j] = y[base + j] * (dy[base + j] - rowDot); }
}
