// out[m, n] = Σ_k x[m, k] · weight[n, k] (+ bias[n]) (+ residual[m, n]) for m < ROWS, a handful of rows (decoding: a token per sequence):
// x is ROWS×K f32, weight N×K (transformers' [out, in]) stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit
// word, the even element in the low half), out ROWS×N, all row-major.
// With so few rows, reading the weight once is the whole cost. A workgroup owns COLUMNS output columns (weight rows);
// all its threads stride over K together, consecutive threads reading consecutive words of each weight row, and each
// thread keeps ROWS×COLUMNS partial sums in registers, reusing every x pair for all its columns. The threads' partials
// are then summed in workgroup memory by a fixed pairwise tree, so the result does not depend on scheduling.
override ROWS: u32 = 1u; // M, at most MAX_ROWS
override COLUMNS: u32 = 4u; // at most MAX_COLUMNS
override WG: u32 = 256u; // a power of two: the tree reduction halves it
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16
// Derived from the constants above; the host sets only those (matmulSmallMKernel.constants).
override PARTIALS: u32 = ROWS * COLUMNS * WG;

// Register arrays need a constant size; loops run to ROWS/COLUMNS, which the compiler then unrolls.
const MAX_ROWS = 8u;
const MAX_COLUMNS = 8u;

struct Params {
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values
// Bindings 2 and 3, the optional bias and residual, addBias, addResidual and activate come from the includes
// that matmul_shape.ts epilogueParts names (bias.wgsl or no_bias.wgsl, ...).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> partials: array<f32, PARTIALS>; // [ROWS·COLUMNS][WG]: consecutive threads, consecutive words

// Weight elements e and e + 1 (the second only when `both`, else 0: it would be the next row's or padding).
// A 16-bit pair starting at an odd element (K odd) straddles two words.
fn weightPair(e: u32, both: bool) -> vec2f {
  var pair = vec2f(0.0);
  if (WEIGHT_FORMAT == F32) {
    pair.x = bitcast<f32>(weight[e]);
    if (both) { pair.y = bitcast<f32>(weight[e + 1u]); }
  } else if ((e & 1u) == 0u) {
    let word = widenWord(weight[e / 2u], WEIGHT_FORMAT);
    pair = vec2f(word.x, select(0.0, word.y, both));
  } else {
    pair.x = widenWord(weight[e / 2u], WEIGHT_FORMAT).y;
    if (both) { pair.y = widenWord(weight[e / 2u + 1u], WEIGHT_FORMAT).x; }
  }
  return pair;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let N = params.N;
  let K = params.K;
  let col0 = (wid.x + wid.y * nwg.x) * COLUMNS;

  var sums = array<f32, MAX_ROWS * MAX_COLUMNS>();
  for (var k = 2u * lid; k < K; k += 2u * WG) {
    let both = k + 1u < K; // false only for the last element of an odd K
    var w = array<vec2f, MAX_COLUMNS>();
    for (var c = 0u; c < COLUMNS; c++) {
      let n = col0 + c;
      if (n < N) { w[c] = weightPair(n * K + k, both); }
    }
    for (var m = 0u; m < ROWS; m++) {
      var xm = vec2f(x[m * K + k], 0.0);
      if (both) { xm.y = x[m * K + k + 1u]; }
      for (var c = 0u; c < COLUMNS; c++) { sums[m * MAX_COLUMNS + c] += dot(xm, w[c]); }
    }
  }

  for (var m = 0u; m < ROWS; m++) {
    for (var c = 0u; c < COLUMNS; c++) { partials[(m * COLUMNS + c) * WG + lid] = sums[m * MAX_COLUMNS + c]; }
  }
  workgroupBarrier();
  // Each level adds the upper half of every sum's partials onto the lower half; the threads share the additions.
  for (var half = WG / 2u; half > 0u; half /= 2u) {
    for (var j = lid; j < ROWS * COLUMNS * half; j += WG) {
      let i = (j / half) * WG + j % half;
      partials[i] += partials[i + half];
    }
    workgroupBarrier();
  }
  for (var s = lid; s < ROWS * COLUMNS; s += WG) {
    let m = s / COLUMNS;
    let n = col0 + s % COLUMNS;
    if (n < N) {
      out[m * N + n] = addResidual(activate(addBias(partials[s * WG], n)), m * N + n);
    }
  }
}
