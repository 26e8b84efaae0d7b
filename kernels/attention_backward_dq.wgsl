// Attention backward, dQ of one (query tile of BR rows, query head, batch row). The forward was out = P V per
// query row, P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dQ = scale · dS K,
// with P recomputed from Q, K and the saved lse, and delta = rowsum(dO ∘ O) (attention_delta.wgsl). The
// workgroup walks the key tiles that hold a key visible to one of its rows, as the forward does, and
// accumulates dQ in registers.
//
// Threads form a GRID×GRID square (x fastest) holding register blocks: for S and dP, query rows x + i·GRID by
// keys y + j·GRID; for dQ, query rows y + i·GRID by dims x + j·GRID. Q and dO, loaded once, are stored
// transposed; the K and V tiles, streamed, as in memory; so neighbouring threads read neighbouring words.
// K and V stream in chunks of DC head dims (one chunk up to D = 128), so that their tiles stay small at D = 256.
override D: u32;
override BR: u32; // query rows per tile, a multiple of GRID, at most GRID * MAX_BLOCK
override BC: u32; // keys per tile, likewise
override GRID: u32; // threads per side of the workgroup
override ROWS: u32; // BR / GRID
override COLS: u32; // BC / GRID
override DIMS: u32; // ceil(D / GRID); ROWS * DIMS at most MAX_ACC
override DC: u32; // head dims per chunk of the K and V tiles: D, or a multiple of GRID
override LAST_CHUNK: u32 = (D - 1u) / DC * DC; // first dim of the last chunk

const MAX_BLOCK = 4u;
const MAX_ACC = 64u; // dQ accumulators per thread

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, H, T, D]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, KVH, S, D]
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>; // [B, H, T, D]
@group(0) @binding(4) var<storage, read> lse: array<f32>; // [B, H, T]
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, T]
// binding 6: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(7) var<storage, read_write> dq: array<f32>; // [B, H, T, D]
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> qTile: array<f32, BR * D>; // [D][BR]
var<workgroup> doTile: array<f32, BR * D>; // [D][BR]
var<workgroup> kTile: array<f32, BC * DC>; // [BC][DC]: dims [d0, d0 + DC) of the current key tile
var<workgroup> vTile: array<f32, BC * DC>; // [BC][DC]
var<workgroup> dsTile: array<f32, BR * BC>; // [BR][BC]
var<workgroup> lseTile: array<f32, BR>;
var<workgroup> deltaTile: array<f32, BR>;

// Dims [d0, d0 + DC) of keys [j0, j0 + BC) of K, and of V when withValues; 0 past S and D.
fn loadKeyChunk(kvBase: u32, j0: u32, d0: u32, lid: u32, withValues: bool) {
  for (var e = lid; e < BC * DC; e += GRID * GRID) {
    let j = j0 + e / DC;
    let d = d0 + e % DC;
    var kx = 0.0;
    var vx = 0.0;
    if (j < params.S && d < D) {
      kx = k[kvBase + j * D + d];
      if (withValues) { vx = v[kvBase + j * D + d]; }
    }
    kTile[e] = kx;
    if (withValues) { vTile[e] = vx; }
  }
}

// dQ += dS K over the head dims [d0, d0 + DC) held in kTile: this thread's dims tx + j·GRID among them. The
// loops over j keep constant bounds (the chunk is a condition) so that dqAcc can stay in registers.
fn accumulateDq(dqAcc: ptr<function, array<f32, MAX_ACC>>, d0: u32, tx: u32, ty: u32) {
  for (var c = 0u; c < BC; c++) {
    var dsc: array<f32, MAX_BLOCK>;
    for (var i = 0u; i < ROWS; i++) { dsc[i] = dsTile[(ty + i * GRID) * BC + c]; }
    for (var j = 0u; j < DIMS; j++) {
      if (j * GRID < d0 || j * GRID >= d0 + DC) { continue; }
      let kc = kTile[c * DC + min(tx + j * GRID, D - 1u) - d0];
      for (var i = 0u; i < ROWS; i++) { (*dqAcc)[i * DIMS + j] = fma(dsc[i], kc, (*dqAcc)[i * DIMS + j]); }
    }
  }
}

@compute @workgroup_size(GRID, GRID)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let WG = GRID * GRID;
  let tx = lid3.x;
  let ty = lid3.y;
  let t0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let rows = min(BR, params.T - t0);
  let rowBase = (b * params.H + h) * params.T + t0;
  let kvBase = (b * params.KVH + h / (params.H / params.KVH)) * params.S * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);

  for (var e = lid; e < BR * D; e += WG) {
    var qx = 0.0;
    var dox = 0.0;
    if (e < rows * D) { qx = q[rowBase * D + e]; dox = dout[rowBase * D + e]; }
    qTile[(e % D) * BR + e / D] = qx;
    doTile[(e % D) * BR + e / D] = dox;
  }
  for (var r = lid; r < BR; r += WG) {
    var l = 0.0;
    var dl = 0.0;
    if (r < rows) { l = lse[rowBase + r]; dl = delta[rowBase + r]; }
    lseTile[r] = l;
    deltaTile[r] = dl;
  }
  var dqAcc: array<f32, MAX_ACC>; // rows ty + i·GRID, dims tx + j·GRID at [i * DIMS + j]

  for (var j0 = span.x - span.x % BC; j0 < span.y; j0 += BC) {
    var s = array<f32, MAX_BLOCK * MAX_BLOCK>();
    var dp = array<f32, MAX_BLOCK * MAX_BLOCK>();
    for (var d0 = 0u; d0 < D; d0 += DC) {
      workgroupBarrier(); // the previous readers of kTile and vTile are done
      loadKeyChunk(kvBase, j0, d0, lid, true);
      workgroupBarrier();
      for (var d = 0u; d < min(DC, D - d0); d++) {
        var qd: array<f32, MAX_BLOCK>;
        var dod: array<f32, MAX_BLOCK>;
        var kd: array<f32, MAX_BLOCK>;
        var vd: array<f32, MAX_BLOCK>;
        for (var i = 0u; i < ROWS; i++) { qd[i] = qTile[(d0 + d) * BR + tx + i * GRID]; dod[i] = doTile[(d0 + d) * BR + tx + i * GRID]; }
        for (var j = 0u; j < COLS; j++) { kd[j] = kTile[(ty + j * GRID) * DC + d]; vd[j] = vTile[(ty + j * GRID) * DC + d]; }
        for (var i = 0u; i < ROWS; i++) {
          for (var j = 0u; j < COLS; j++) {
            s[i * MAX_BLOCK + j] = fma(qd[i], kd[j], s[i * MAX_BLOCK + j]);
            dp[i * MAX_BLOCK + j] = fma(dod[i], vd[j], dp[i * MAX_BLOCK + j]);
          }
        }
      }
    }
    for (var i = 0u; i < ROWS; i++) {
      let r = tx + i * GRID;
      for (var j = 0u; j < COLS; j++) {
        let c = ty + j * GRID;
        var ds = 0.0;
        if (r < rows && keyVisible(pos0 + r, j0 + c, keys, params.causal, params.window)) {
          ds = exp(s[i * MAX_BLOCK + j] * params.scale - lseTile[r]) * (dp[i * MAX_BLOCK + j] - deltaTile[r]);
        }
        dsTile[r * BC + c] = ds;
      }
    }
    workgroupBarrier();
    // The last chunk first: it is still in kTile (with one chunk, the only one).
    accumulateDq(&dqAcc, LAST_CHUNK, tx, ty);
    for (var d0 = 0u; d0 < LAST_CHUNK; d0 += DC) {
      workgroupBarrier();
      loadKeyChunk(kvBase, j0, d0, lid, false);
      workgroupBarrier();
      accumulateDq(&dqAcc, d0, tx, ty);
    }
  }
  for (var i = 0u; i < ROWS; i++) {
    let r = ty + i * GRID;
    for (var j = 0u; j < DIMS; j++) {
      let d = tx + j * GRID;
      if (r < rows && d < D) { dq[(rowBase + r) * D + d] = dqAcc[i * DIMS + j] * params.scale; }
    }
  }
}
