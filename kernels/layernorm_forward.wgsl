// LayerNorm over the last dim, ROWS rows a workgroup side by side, ROW_THREADS threads each:
//   y = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps),  var the biased variance;
// mean and rstd are also written for the backward. The pair variant also writes y2 = xhat · weight2 + bias2
// (writeSecond, from layernorm_second_output.wgsl or layernorm_no_second_output.wgsl).
// Two passes over the row (the mean, then the squared deviations from it), both taken relative to the
// row's first element: a large common offset then costs no precision in either sum.
override WG: u32 = 256u; // ROWS * ROW_THREADS
override ROWS: u32 = 1u;
override ROW_THREADS: u32 = WG / ROWS; // a power of two: the tree reduction halves it

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
  let t = rowLane(lid, (wid.x + wid.y * nwg.x) * ROWS, params.rows);
  let row = t.row;
  let lane = t.lane;
  let cols = select(0u, params.cols, t.live);
  let base = row * cols;
  var shift = 0.0;
  if (t.live) { shift = x[base]; }
  var sum = 0.0;
  for (var j = lane; j < cols; j += ROW_THREADS) { sum += x[base + j] - shift; }
  let shiftedMean = workgroupSum(sum, lid) / f32(params.cols);
  var squares = 0.0;
  for (var j = lane; j < cols; j += ROW_THREADS) {
    let d = x[base + j] - shift - shiftedMean;
    squares += d * d;
  }
  let r = inverseSqrt(workgroupSum(squares, lid) / f32(params.cols) + params.eps);
  for (var j = lane; j < cols; j += ROW_THREADS) {
    let xhat = (x[base + j] - shift - shiftedMean) * r;
    y[base + j] = xhat * weight[j] + bias[j];
    writeSecond(base + j, j, xhat);
  }
  if (t.live && lane == 0u) {
    mean[row] = shift + shiftedMean;
    rstd[row] = r;
  }
}
