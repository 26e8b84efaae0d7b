// RMSNorm over the last dim (transformers' LlamaRMSNorm in f32), one workgroup per row:
//   y = x * rstd * weight,  rstd = 1 / sqrt(mean(x^2) + eps);  rstd is also written for the backward.
override WG: u32 = 256u; // a power of two: the tree reduction halves it

struct Params { rows: u32, cols: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

alias Partial = f32; // workgroupSum (workgroup_sum.wgsl) sums these

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let cols = params.cols;
  let base = row * cols;
  var squares = 0.0;
  for (var j = lid; j < cols; j += WG) {
    let v = x[base + j];
    squares += v * v;
  }
  let r = inverseSqrt(workgroupSum(squares, lid) / f32(cols) + params.eps);
  for (var j = lid; j < cols; j += WG) { y[base + j] = x[base + j] * r * weight[j]; }
  if (lid == 0u) { rstd[row] = r; }
}
