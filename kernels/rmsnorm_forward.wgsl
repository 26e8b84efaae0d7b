// RMSNorm over the last dim (transformers' LlamaRMSNorm in f32), ROWS rows a workgroup side by side, ROW_THREADS
// threads each:
//   y = x * rstd * weight,  rstd = 1 / sqrt(mean(x^2) + eps);  rstd is also written for the backward.
override WG: u32 = 256u; // ROWS * ROW_THREADS
override ROWS: u32 = 1u;
override ROW_THREADS: u32 = WG / ROWS; // a power of two: the tree reduction halves it

struct Params { rows: u32, cols: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

alias Partial = f32; // workgroupSum (workgroup_sum.wgsl) sums these

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = rowLane(lid, (wid.x + wid.y * nwg.x) * ROWS, params.rows);
  let row = t.row;
  let lane = t.lane;
  let cols = select(0u, params.cols, t.live);
  let base = row * cols;
  var squares = 0.0;
  for (var j = lane; j < cols; j += ROW_THREADS) {
    let v = x[base + j];
    squares += v * v;
  }
  let r = inverseSqrt(workgroupSum(squares, lid) / f32(params.cols) + params.eps);
  for (var j = lane; j < cols; j += ROW_THREADS) { y[base + j] = x[base + j] * r * weight[j]; }
  if (t.live && lane == 0u) { rstd[row] = r; }
}
