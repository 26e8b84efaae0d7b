// Backward of layernorm_forward.wgsl for a block of params.rowsPerBlock consecutive rows per workgroup, whose row
// sums ROWS rows at a time take side by side, ROW_THREADS threads each.
// Forward was y = xhat * weight + bias with xhat = (x - mean) * rstd; with g = dy * weight,
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))       (means over the row)
//   partialWeight[block, j] = sum over the block's rows of dy * xhat,  partialBias[block, j] = sum of dy.
// xhat is recomputed from the saved mean and rstd. column_sum.wgsl adds the blocks' partial sums in a
// fixed order: the weight gradients are deterministic without atomics.
override WG: u32 = 256u; // ROWS * ROW_THREADS
override ROWS: u32 = 1u;
override ROW_THREADS: u32 = WG / ROWS; // a power of two: the tree reduction halves it
// Sizes the per-row statistics. Rows per block is a parameter, not a constant: with a constant bound on
// the row loop around the barriers, lavapipe took 3-8 s to compile each variant (1.5 s now).
override MAX_ROWS_PER_BLOCK: u32 = 64u;

struct Params { rows: u32, cols: u32, rowsPerBlock: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partialWeight: array<f32>;
@group(0) @binding(7) var<storage, read_write> partialBias: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

alias Partial = vec2f; // workgroupSum (workgroup_sum.wgsl) sums these
var<workgroup> rowMeans: array<vec2f, MAX_ROWS_PER_BLOCK>; // (mean(g), mean(g * xhat)) of each row of the block

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let block = wid.x + wid.y * nwg.x;
  let firstRow = block * params.rowsPerBlock;
  if (firstRow >= params.rows) { return; }
  let blockRows = min(params.rowsPerBlock, params.rows - firstRow);
  let cols = params.cols;
  for (var r0 = 0u; r0 < blockRows; r0 += ROWS) {
    let t = rowLane(lid, r0, blockRows); // rows of the block, numbered from 0
    let r = t.row;
    let live = t.live;
    let row = firstRow + r;
    let base = row * cols;
    var mu = 0.0;
    var rs = 0.0;
    if (live) { mu = mean[row]; rs = rstd[row]; }
    var sums = vec2f(0.0);
    for (var j = t.lane; j < select(0u, cols, live); j += ROW_THREADS) {
      let g = dy[base + j] * weight[j];
      sums += vec2f(g, g * (x[base + j] - mu));
    }
    let total = workgroupSum(sums, lid); // (sum of g, sum of g * xhat / rstd)
    if (live && t.lane == 0u) { rowMeans[r] = total * vec2f(1.0, rs) / f32(cols); }
  }
  workgroupBarrier();
  // Columns outer, the block's rows inner: each column's partial sums stay in registers.
  for (var j = lid; j < cols; j += WG) {
    let w = weight[j];
    var dWeight = 0.0;
    var dBias = 0.0;
    for (var r = 0u; r < blockRows; r++) {
      let row = firstRow + r;
      let i = row * cols + j;
      let rs = rstd[row];
      let xhat = (x[i] - mean[row]) * rs;
      let d = dy[i];
      let m = rowMeans[r];
      dx[i] = rs * (d * w - m.x - xhat * m.y);
      dWeight += d * xhat;
      dBias += d;
    }
    partialWeight[block * cols + j] = dWeight;
    partialBias[block * cols + j] = dBias;
  }
}
