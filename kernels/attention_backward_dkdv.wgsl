// Attention backward, dK and dV of one (key tile of BC keys, kv head, batch row). The forward was
// out = P V per query row, P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dK = scale · dSᵀ Q,
// with P recomputed from Q, K and the saved lse, and delta = rowsum(dO ∘ O) (attention_delta.wgsl).
// The workgroup loops over the H / KVH query heads that read this kv head and over the query tiles that see
// one of its keys, accumulating dK and dV in registers: no atomics, a fixed order, deterministic.
//
// Threads form a GRID×GRID square (x fastest) holding register blocks: for S and dP, query rows y + i·GRID by
// keys x + j·GRID; for dK and dV, keys y + i·GRID by dims x + j·GRID. K and V, loaded once, are stored
// transposed; the Q and dO tiles, streamed, as in memory; so neighbouring threads read neighbouring words.
// Q and dO stream in chunks of DC head dims (one chunk up to D = 128), so that their tiles stay small at D = 256.
override D: u32;
override BR: u32; // query rows per tile, a multiple of GRID, at most GRID * MAX_BLOCK
override BC: u32; // keys per tile, likewise
override GRID: u32; // threads per side of the workgroup
override ROWS: u32; // BR / GRID
override COLS: u32; // BC / GRID
override DIMS: u32; // ceil(D / GRID); COLS * DIMS at most MAX_ACC
override DC: u32; // head dims per chunk of the Q and dO tiles: D, or a multiple of GRID
override LAST_CHUNK: u32 = (D - 1u) / DC * DC; // first dim of the last chunk

const MAX_BLOCK = 4u;
const MAX_ACC = 64u; // dK (and dV) accumulators per thread

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, H, T, D]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, KVH, S, D]
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>; // [B, H, T, D]
@group(0) @binding(4) var<storage, read> lse: array<f32>; // [B, H, T]
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, T]
// binding 6: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(7) var<storage, read_write> dk: array<f32>; // [B, KVH, S, D]
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
@group(0) @binding(9) var<uniform> params: Params;

var<workgroup> kTile: array<f32, BC * D>; // [D][BC]
var<workgroup> vTile: array<f32, BC * D>; // [D][BC]
var<workgroup> qTile: array<f32, BR * DC>; // [BR][DC]: dims [d0, d0 + DC) of the current query tile
var<workgroup> doTile: array<f32, BR * DC>; // [BR][DC]
var<workgroup> pTile: array<f32, BR * BC>; // [BR][BC]
var<workgroup> dsTile: array<f32, BR * BC>; // [BR][BC]
var<workgroup> lseTile: array<f32, BR>;
var<workgroup> deltaTile: array<f32, BR>;

// Dims [d0, d0 + DC) of the query rows [row0, row0 + rows) of Q and dO; 0 past rows and D.
fn loadQueryChunk(row0: u32, rows: u32, d0: u32, lid: u32) {
  for (var e = lid; e < BR * DC; e += GRID * GRID) {
    let r = e / DC;
    let d = d0 + e % DC;
    var qx = 0.0;
    var dox = 0.0;
    if (r < rows && d < D) { qx = q[(row0 + r) * D + d]; dox = dout[(row0 + r) * D + d]; }
    qTile[e] = qx;
    doTile[e] = dox;
  }
}

// dV += Pᵀ dO and dK += dSᵀ Q over the head dims [d0, d0 + DC) held in qTile and doTile: this thread's dims
// tx + j·GRID among them. The loops over j keep constant bounds (the chunk is a condition) so that dkAcc and
// dvAcc can stay in registers.
fn accumulateDkDv(dkAcc: ptr<function, array<f32, MAX_ACC>>, dvAcc: ptr<function, array<f32, MAX_ACC>>, d0: u32, rows: u32, tx: u32, ty: u32) {
  for (var r = 0u; r < rows; r++) {
    var pr: array<f32, MAX_BLOCK>;
    var dsr: array<f32, MAX_BLOCK>;
    for (var i = 0u; i < COLS; i++) { pr[i] = pTile[r * BC + ty + i * GRID]; dsr[i] = dsTile[r * BC + ty + i * GRID]; }
    for (var j = 0u; j < DIMS; j++) {
      if (j * GRID < d0 || j * GRID >= d0 + DC) { continue; }
      let d = min(tx + j * GRID, D - 1u) - d0;
      let dor = doTile[r * DC + d];
      let qr = qTile[r * DC + d];
      for (var i = 0u; i < COLS; i++) {
        (*dvAcc)[i * DIMS + j] = fma(pr[i], dor, (*dvAcc)[i * DIMS + j]);
        (*dkAcc)[i * DIMS + j] = fma(dsr[i], qr, (*dkAcc)[i * DIMS + j]);
      }
    }
  }
}

@compute @workgroup_size(GRID, GRID)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let WG = GRID * GRID;
  let tx = lid3.x;
  let ty = lid3.y;
  let j0 = wid.x * BC;
  let kvh = wid.y;
  let b = wid.z;
  let nKeys = min(BC, params.S - j0);
  let kvBase = ((b * params.KVH + kvh) * params.S + j0) * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  var rowSpan = seeingRowSpan(j0, j0 + nKeys - 1u, params.T, params.positionOffset, params.causal, params.window);
  if (keys.y <= j0 || keys.x >= j0 + nKeys) { rowSpan = vec2u(0u, 0u); } // padding hides the whole tile

  for (var e = lid; e < BC * D; e += WG) {
    var kx = 0.0;
    var vx = 0.0;
    if (e < nKeys * D) { kx = k[kvBase + e]; vx = v[kvBase + e]; }
    kTile[(e % D) * BC + e / D] = kx;
    vTile[(e % D) * BC + e / D] = vx;
  }
  var dkAcc: array<f32, MAX_ACC>; // keys ty + i·GRID, dims tx + j·GRID at [i * DIMS + j]
  var dvAcc: array<f32, MAX_ACC>;

  let G = params.H / params.KVH;
  for (var g = 0u; g < G; g++) {
    let rowBase = (b * params.H + kvh * G + g) * params.T;
    for (var t0 = rowSpan.x - rowSpan.x % BR; t0 < rowSpan.y; t0 += BR) {
      let rows = min(BR, params.T - t0);
      // The previous query tile read lseTile and deltaTile before the barrier that preceded its dK and dV.
      for (var r = lid; r < BR; r += WG) {
        var l = 0.0;
        var dl = 0.0;
        if (r < rows) { l = lse[rowBase + t0 + r]; dl = delta[rowBase + t0 + r]; }
        lseTile[r] = l;
        deltaTile[r] = dl;
      }
      var s = array<f32, MAX_BLOCK * MAX_BLOCK>();
      var dp = array<f32, MAX_BLOCK * MAX_BLOCK>();
      for (var d0 = 0u; d0 < D; d0 += DC) {
        workgroupBarrier(); // the previous readers of qTile and doTile are done
        loadQueryChunk(rowBase + t0, rows, d0, lid);
        workgroupBarrier();
        for (var d = 0u; d < min(DC, D - d0); d++) {
          var qd: array<f32, MAX_BLOCK>;
          var dod: array<f32, MAX_BLOCK>;
          var kd: array<f32, MAX_BLOCK>;
          var vd: array<f32, MAX_BLOCK>;
          for (var i = 0u; i < ROWS; i++) { qd[i] = qTile[(ty + i * GRID) * DC + d]; dod[i] = doTile[(ty + i * GRID) * DC + d]; }
          for (var j = 0u; j < COLS; j++) { kd[j] = kTile[(d0 + d) * BC + tx + j * GRID]; vd[j] = vTile[(d0 + d) * BC + tx + j * GRID]; }
          for (var i = 0u; i < ROWS; i++) {
            for (var j = 0u; j < COLS; j++) {
              s[i * MAX_BLOCK + j] = fma(qd[i], kd[j], s[i * MAX_BLOCK + j]);
              dp[i * MAX_BLOCK + j] = fma(dod[i], vd[j], dp[i * MAX_BLOCK + j]);
            }
          }
        }
      }
      for (var i = 0u; i < ROWS; i++) {
        let r = ty + i * GRID;
        for (var j = 0u; j < COLS; j++) {
          let c = tx + j * GRID;
          var p = 0.0;
          if (r < rows && keyVisible(t0 + r + params.positionOffset, j0 + c, keys, params.causal, params.window)) {
            p = exp(s[i * MAX_BLOCK + j] * params.scale - lseTile[r]);
          }
          pTile[r * BC + c] = p;
          dsTile[r * BC + c] = p * (dp[i * MAX_BLOCK + j] - deltaTile[r]);
        }
      }
      workgroupBarrier();
      // The last chunk first: it is still in qTile and doTile (with one chunk, the only one).
      accumulateDkDv(&dkAcc, &dvAcc, LAST_CHUNK, rows, tx, ty);
      for (var d0 = 0u; d0 < LAST_CHUNK; d0 += DC) {
        workgroupBarrier();
        loadQueryChunk(rowBase + t0, rows, d0, lid);
        workgroupBarrier();
        accumulateDkDv(&dkAcc, &dvAcc, d0, rows, tx, ty);
      }
    }
  }
  for (var i = 0u; i < COLS; i++) {
    let c = ty + i * GRID;
    for (var j = 0u; j < DIMS; j++) {
      let d = tx + j * GRID;
      if (c < nKeys && d < D) {
        dk[kvBase + c * D + d] = dkAcc[i * DIMS + j] * params.scale;
        dv[kvBase + c * D + d] = dvAcc[i * DIMS + j];
      }
    }
  }
}
