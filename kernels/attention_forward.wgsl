// FlashAttention-2 forward for one (query tile of BR rows, query head h, batch row b):
//   out = softmax(Q Kᵀ·scale + mask) V,   lse = ln Σ_visible exp(score)   (scores scaled and masked)
// Query head h reads kv head h / (H / KVH). The workgroup walks only the key tiles that hold a key visible to
// one of its rows, keeping per row the running max m, the running sum l of exp(score - m) and the
// unnormalised output (online softmax, f32), so nothing of size T×S exists. A row that sees no key gets
// out = 0 and lse = -inf. q [B, H, T, D], k and v [B, KVH, S, D] hold `Storage` (f32 or f16: the
// spec fills in the placeholder); the padding variant also reads keyRange [B, 2] i32.
//
// Threads form a GRID×GRID square (x fastest) and hold blocks in registers, so that each word read from
// workgroup memory feeds several multiply-adds: for the scores, query rows x + i·GRID by keys y + j·GRID;
// for the output, query rows y + i·GRID by dims x + j·GRID. Neighbouring threads (x) then read neighbouring
// words, or all the same word: the Q tile, loaded once, is stored transposed; K and V tiles as in memory.
alias Storage = {{STORAGE}};

override D: u32;
override BR: u32; // query rows per tile, a multiple of GRID, at most GRID * MAX_BLOCK
override BC: u32; // keys per tile, likewise
override GRID: u32; // threads per side of the workgroup
override ROWS: u32; // BR / GRID
override COLS: u32; // BC / GRID
override DIMS: u32; // ceil(D / GRID), at most MAX_DIMS; ROWS * DIMS at most MAX_ACC

const MAX_BLOCK = 4u;
const MAX_DIMS = 32u;
const MAX_ACC = 64u; // output accumulators per thread
@group(0) @binding(0) var<storage, read> q: array<Storage>;
@group(0) @binding(1) var<storage, read> k: array<Storage>;
@group(0) @binding(2) var<storage, read> v: array<Storage>;
// binding 3: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// Bound as bits so that -inf can be written without infinite arithmetic.
@group(0) @binding(5) var<storage, read_write> lse: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> qTile: array<f32, BR * D>; // [D][BR]
var<workgroup> kvTile: array<f32, BC * D>; // [BC][D]: K of the current key tile, then its V
var<workgroup> pTile: array<f32, BR * BC>; // [BR][BC]: scaled scores (NO_SCORE where masked), then exp(score - m)
var<workgroup> rowMax: array<f32, BR>;
var<workgroup> rowSum: array<f32, BR>;
var<workgroup> rowRescale: array<f32, BR>; // exp(m_old - m_new) of the current key tile

@compute @workgroup_size(GRID, GRID)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let WG = GRID * GRID;
  let tx = lid3.x;
  let ty = lid3.y;
  let t0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let rows = min(BR, params.T - t0);
  let qBase = ((b * params.H + h) * params.T + t0) * D;
  let kvBase = (b * params.KVH + h / (params.H / params.KVH)) * params.S * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);

  for (var e = lid; e < BR * D; e += WG) {
    var x = 0.0;
    if (e < rows * D) { x = f32(q[qBase + e]); }
    qTile[(e % D) * BR + e / D] = x;
  }
  for (var r = lid; r < BR; r += WG) { rowMax[r] = NO_SCORE; rowSum[r] = 0.0; }
  var o: array<f32, MAX_ACC>; // output rows ty + i·GRID, dims tx + j·GRID at [i * DIMS + j]

  for (var j0 = span.x - span.x % BC; j0 < span.y; j0 += BC) {
    workgroupBarrier(); // the previous key tile's readers of kvTile are done
    for (var e = lid; e < BC * D; e += WG) {
      var x = 0.0;
      if (j0 + e / D < params.S) { x = f32(k[kvBase + j0 * D + e]); }
      kvTile[e] = x;
    }
    workgroupBarrier();
    var s = array<f32, MAX_BLOCK * MAX_BLOCK>();
    for (var d = 0u; d < D; d++) {
      var qd: array<f32, MAX_BLOCK>;
      var kd: array<f32, MAX_BLOCK>;
      for (var i = 0u; i < ROWS; i++) { qd[i] = qTile[d * BR + tx + i * GRID]; }
      for (var j = 0u; j < COLS; j++) { kd[j] = kvTile[(ty + j * GRID) * D + d]; }
      for (var i = 0u; i < ROWS; i++) {
        for (var j = 0u; j < COLS; j++) { s[i * MAX_BLOCK + j] = fma(qd[i], kd[j], s[i * MAX_BLOCK + j]); }
      }
    }
    for (var i = 0u; i < ROWS; i++) {
      let r = tx + i * GRID;
      for (var j = 0u; j < COLS; j++) {
        let c = ty + j * GRID;
        let visible = r < rows && keyVisible(pos0 + r, j0 + c, keys, params.causal, params.window);
        pTile[r * BC + c] = select(NO_SCORE, s[i * MAX_BLOCK + j] * params.scale, visible);
      }
    }
    workgroupBarrier();
    // V replaces K while the rows' statistics absorb this tile.
    for (var e = lid; e < BC * D; e += WG) {
      var x = 0.0;
      if (j0 + e / D < params.S) { x = f32(v[kvBase + j0 * D + e]); }
      kvTile[e] = x;
    }
    for (var r = lid; r < BR; r += WG) {
      let mOld = rowMax[r];
      var m = mOld;
      for (var c = 0u; c < BC; c++) { m = max(m, pTile[r * BC + c]); }
      var sum = 0.0;
      for (var c = 0u; c < BC; c++) {
        let score = pTile[r * BC + c];
        let p = select(0.0, exp(score - m), score != NO_SCORE);
        pTile[r * BC + c] = p;
        sum += p;
      }
      let rescale = exp(mOld - m);
      rowRescale[r] = rescale;
      rowSum[r] = rowSum[r] * rescale + sum;
      rowMax[r] = m;
    }
    workgroupBarrier();
    for (var i = 0u; i < ROWS; i++) {
      let rescale = rowRescale[ty + i * GRID];
      for (var j = 0u; j < DIMS; j++) { o[i * DIMS + j] *= rescale; }
    }
    for (var c = 0u; c < BC; c++) {
      var pc: array<f32, MAX_BLOCK>;
      var vc: array<f32, MAX_DIMS>;
      for (var i = 0u; i < ROWS; i++) { pc[i] = pTile[(ty + i * GRID) * BC + c]; }
      for (var j = 0u; j < DIMS; j++) { vc[j] = kvTile[c * D + min(tx + j * GRID, D - 1u)]; }
      for (var i = 0u; i < ROWS; i++) {
        for (var j = 0u; j < DIMS; j++) { o[i * DIMS + j] = fma(pc[i], vc[j], o[i * DIMS + j]); }
      }
    }
  }
  workgroupBarrier();
  for (var i = 0u; i < ROWS; i++) {
    let r = ty + i * GRID;
    let l = rowSum[r];
    for (var j = 0u; j < DIMS; j++) {
      let d = tx + j * GRID;
      if (r < rows && d < D) { out[qBase + r * D + d] = select(0.0, o[i * DIMS + j] / l, l > 0.0); }
    }
  }
  let lseBase = (b * params.H + h) * params.T + t0;
  for (var r = lid; r < rows; r += WG) {
    let l = rowSum[r];
    lse[lseBase + r] = select(NEG_INF_BITS, bitcast<u32>(rowMax[r] + log(l)), l > 0.0);
  }
}
