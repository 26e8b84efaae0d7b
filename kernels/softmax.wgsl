// y = exp(x - max) / Σ exp(x - max) along each row of `cols` contiguous elements; one workgroup per row.
// Each thread keeps an online (max m, sum s = Σ exp(x - m)) over its strided elements, so the row is read twice
// (once to reduce, once to write) however long it is; the partial states are then combined in a tree.
override WG: u32 = 256u; // a power of two

struct Params { rows: u32, cols: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> partialMax: array<f32, WG>;
var<workgroup> partialSum: array<f32, WG>;

// Stands in for -inf as the empty state's max: combining two empty states must give exp(0) · 0, not exp(-inf + inf).
const LOWEST: f32 = -0x1.fffffep+127f; // the most negative finite f32

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var m = LOWEST;
  var s = 0.0;
  for (var j = lid; j < params.cols; j += WG) {
    let v = x[base + j];
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  partialMax[lid] = m;
  partialSum[lid] = s;
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    workgroupBarrier();
    if (lid < stride) {
      let m1 = partialMax[lid];
      let m2 = partialMax[lid + stride];
      let mc = max(m1, m2);
      partialSum[lid] = partialSum[lid] * exp(m1 - mc) + partialSum[lid + stride] * exp(m2 - mc);
      partialMax[lid] = mc;
    }
  }
  workgroupBarrier();
  let rowMax = partialMax[0];
  let invSum = 1.0 / partialSum[0];
  for (var j = lid; j < params.cols; j += WG) { y[base + j] = exp(x[base + j] - rowMax) * invSum; }
}
