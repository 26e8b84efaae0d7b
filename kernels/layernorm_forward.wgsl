// LayerNorm over the last dim, one workgroup per row:
//   y = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps),  var the biased variance;
// mean and rstd are also written for the backward. The pair variant also writes y2 = xhat · weight2 + bias2
// (writeSecond, from layernorm_second_output.wgsl or layernorm_no_second_output.wgsl).
// Two passes over the row (the mean, then the squared deviations from it), both taken relative to the
// row's first element: a large common offset then costs no precision in either sum.
override WG: u32 = 256u; // a power of two: the tree reduction halves it

struct Params { rows: u32, cols: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
// Bindings 3, 4 (weight2, bias2) and 6 (y2): the pair's, in its include.
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(9) var<uniform> params: Params;

alias Partial = f32; // workgroupSum (workgroup_sum.wgsl) sums these

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let cols = params.cols;
  let base = row * cols;
  let shift = x[base];
  var sum = 0.0;
  for (var j = lid; j < cols; j += WG) { sum += x[base + j] - shift; }
  let shiftedMean = workgroupSum(sum, lid) / f32(cols);
  var squares = 0.0;
  for (var j = lid; j < cols; j += WG) {
    let d = x[base + j] - shift - shiftedMean;
    squares += d * d;
  }
  let r = inverseSqrt(workgroupSum(squares, lid) / f32(cols) + params.eps);
  for (var j = lid; j < cols; j += WG) {
    let xhat = (x[base + j] - shift - shiftedMean) * r;
    y[base + j] = xhat * weight[j] + bias[j];
    writeSecond(base + j, j, xhat);
  }
  if (lid == 0u) {
    mean[row] = shift + shiftedMean;
    rstd[row] = r;
  }
}
