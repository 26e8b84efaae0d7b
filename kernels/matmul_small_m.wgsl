// out[m, n] = Σ_k x[m, k] · weight[n, k] (+ bias[n]) (+ residual[m, n]) for m < M, a handful of rows (decoding: a token per sequence):
// x is M×K f32, weight N×K (transformers' [out, in]) stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit
// word, the even element in the low half), out M×N, all row-major.
// With so few rows, reading the weight once is the whole cost. A workgroup owns COLUMNS output columns (weight rows);
// all its threads stride over K together, consecutive threads reading consecutive words of each weight row, and each
// thread keeps ROWS×COLUMNS partial sums in registers, reusing every x pair for all its columns. The threads' partials
// are then summed in workgroup memory by a fixed pairwise tree, so the result does not depend on scheduling.
// The grouped variants run several weights of one format over the same x in one dispatch: each workgroup's columns
// are rows of those weights (columnRow), each column summed exactly as the one-weight kernel sums it (the same k
// stride and tree for the same WG), so a grouped product equals the separate ones bit for bit. What the variant
// reads and stores comes from one include: small_m_weight.wgsl (one weight and the matmul epilogue),
// small_m_concatenated.wgsl (three weights side by side, [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ]: q, k, v), small_m_gated.wgsl (two
// weights interleaved, out = f(x·Gᵀ) · (x·Uᵀ): SwiGLU's gate and up).
override ROWS: u32 = 1u; // M's bucket (a power of two, at most MAX_ROWS): rows [M, ROWS) repeat row M - 1, unstored
override COLUMNS: u32 = 4u; // at most MAX_COLUMNS
override WG: u32 = 256u; // a power of two: the tree reduction halves it
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16
// Derived from the constants above; the host sets only those (matmulSmallMKernel.constants).
override PARTIALS: u32 = ROWS * COLUMNS * WG;

// Register arrays need a constant size; loops run to ROWS/COLUMNS, which the compiler then unrolls.
const MAX_ROWS = 8u;
const MAX_COLUMNS = 8u;

struct Params {
  N: u32, // the product's columns: of all its weights together
  K: u32,
  M: u32, // x's rows, at most ROWS
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
// Bindings 1 to 3, the weight(s) as words of WEIGHT_FORMAT values (and the one weight's optional bias and
// residual), weightWord, workgroupWeight, columnRow, rowCount and storeColumn come from the variant's include (above).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> partials: array<f32, PARTIALS>; // [ROWS·COLUMNS][WG]: consecutive threads, consecutive words
var<private> sums: array<f32, MAX_ROWS * MAX_COLUMNS>; // this thread's partial sum of each (row, column)

// Elements e and e + 1 of weight j (the second only when `both`, else 0: it would be the next row's or padding).
// A 16-bit pair starting at an odd element (K odd) straddles two words.
fn weightPair(j: u32, e: u32, both: bool) -> vec2f {
  var pair = vec2f(0.0);
  if (WEIGHT_FORMAT == F32) {
    pair.x = bitcast<f32>(weightWord(j, e));
    if (both) { pair.y = bitcast<f32>(weightWord(j, e + 1u)); }
  } else if ((e & 1u) == 0u) {
    let word = widenWord(weightWord(j, e / 2u), WEIGHT_FORMAT);
    pair = vec2f(word.x, select(0.0, word.y, both));
  } else {
    pair.x = widenWord(weightWord(j, e / 2u), WEIGHT_FORMAT).y;
    if (both) { pair.y = widenWord(weightWord(j, e / 2u + 1u), WEIGHT_FORMAT).x; }
  }
  return pair;
}

// Adds this thread's share of workgroup g's columns into sums, jg its workgroupWeight: a constant in each call, so
// that every column's weight (columnRow(jg, g, c).x, c unrolled) folds and the k loop loads without choosing.
fn accumulate(jg: u32, g: u32, lid: u32, K: u32) {
  // The first element of each column's row in its weight; a padding column's (row past rowCount: not read) clamped to
  // the last row, which measured 5% faster on lavapipe than leaving it unclamped.
  var first = array<u32, MAX_COLUMNS>();
  for (var c = 0u; c < COLUMNS; c++) {
    let row = columnRow(jg, g, c);
    first[c] = min(row.y, rowCount(row.x) - 1u) * K;
  }
  for (var k = 2u * lid; k < K; k += 2u * WG) {
    let both = k + 1u < K; // false only for the last element of an odd K
    var w = array<vec2f, MAX_COLUMNS>();
    for (var c = 0u; c < COLUMNS; c++) {
      let row = columnRow(jg, g, c);
      if (row.y < rowCount(row.x)) { w[c] = weightPair(row.x, first[c] + k, both); }
    }
    for (var m = 0u; m < ROWS; m++) {
      let r = min(m, params.M - 1u); // a bucket's rows past M read a real row; their sums are not stored
      var xm = vec2f(x[r * K + k], 0.0);
      if (both) { xm.y = x[r * K + k + 1u]; }
      for (var c = 0u; c < COLUMNS; c++) { sums[m * MAX_COLUMNS + c] += dot(xm, w[c]); }
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let K = params.K;
  let g = wid.x + wid.y * nwg.x;
  let jg = workgroupWeight(g); // uniform over the workgroup: one call per value, each specialised
  switch (jg) {
    case 0u: { accumulate(0u, g, lid, K); }
    case 1u: { accumulate(1u, g, lid, K); }
    default: { accumulate(2u, g, lid, K); }
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
    let row = columnRow(jg, g, s % COLUMNS);
    if (row.y < rowCount(row.x) && s / COLUMNS < params.M) { storeColumn(s / COLUMNS, row, s); } // row m = s / COLUMNS, its sum partials[s · WG]
  }
}
