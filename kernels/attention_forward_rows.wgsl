// The forward of attention_forward.wgsl (out = softmax(Q Kᵀ·scale + mask) V, lse = ln Σ_visible exp(score), the
// same mask, GQA, online softmax and tile skipping) for SIMD CPUs, in the manner of matmul_rows.wgsl: lavapipe runs
// a subgroup of 8 invocations as one vector and any load from memory as one load per lane (a word or a vec4 alike,
// uniform addresses too), so every load here brings a quad (4 consecutive dims) and values move between lanes by
// subgroupBroadcast and subgroup reductions (register shuffles there). No workgroup memory, no barrier.
//
// A workgroup is one subgroup of 8 lanes owning 16 query rows t0..t0+15 of one (query head h, batch row b), as two
// groups of 8 rows that share every load of K and V; it walks the key tiles of 32 keys that hold a key visible to
// one of its rows. In a tile lane L owns keys j0+4L..j0+4L+3.
//   Scores: per quad of dims, each lane loads its 4 keys' quads of K (a 4×4 block) and its own rows' quads of Q
//     (row lane of each group); the rows' quads are broadcast, so 6 loads feed 256 multiply-adds: lane L holds
//     s[r][4L..4L+3] for all 16 rows.
//   Softmax: per row, the tile's max and sum of exp(score - m) are subgroup reductions over the 8 lanes; m and l
//     (running max and sum) are the same in every lane.
//   P V: lanes own output quads of dims (lane + 8·slot, SLOTS = ceil(D / 32) of them); for each lane L in turn,
//     its 4 keys' P values of the 16 rows are broadcast and each lane loads those 4 keys' V quads at its dims:
//     4 loads and 16 broadcasts feed 256 multiply-adds per slot. Blocks of 4 keys that no row sees are skipped
//     (the P V product runs over 16 × 4 tiles; the scores over 16 × 32).
// Rows past T and keys past S load a clamped, valid quad and store nothing (the clamped keys are masked); dims past
// D likewise. A row that sees no key gets out = 0 and lse = -inf. q [B, H, T, D], k and v [B, KVH, S, D] hold
// `Storage` (f32 or f16), read as quads (D a multiple of 4); the padding variant also reads keyRange [B, 2] i32.
// Needs subgroups of exactly 8 invocations (attentionRowsUnfit). Two groups of 8 rows beat one by 1.1-1.5x
// on lavapipe (B1 H4 D64, causal and window 64, T256 and T512), as in matmul_rows.wgsl.
alias Storage = {{STORAGE}};

@group(0) @binding(0) var<storage, read> q: array<vec4<Storage>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<Storage>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<Storage>>;
// binding 3: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
// Bound as bits so that -inf can be written without infinite arithmetic.
@group(0) @binding(5) var<storage, read_write> lse: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

// Column i of m times f[i].
fn scaleColumns(m: mat4x4f, f: vec4f) -> mat4x4f { return mat4x4f(m[0] * f.x, m[1] * f.y, m[2] * f.z, m[3] * f.w); }

fn maxOf(x: vec4f) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }
fn sumOf(x: vec4f) -> f32 { return (x.x + x.y) + (x.z + x.w); }

// exp(s - m) of one row, 0 where masked.
fn probabilityRow(s: vec4f, m: f32) -> vec4f { return select(vec4f(0.0), exp(s - vec4f(m)), s != vec4f(NO_SCORE)); }

// exp(s - m) per row (column) of s, 0 where masked.
fn probabilities(s: mat4x4f, m: vec4f) -> mat4x4f {
  return mat4x4f(probabilityRow(s[0], m.x), probabilityRow(s[1], m.y), probabilityRow(s[2], m.z), probabilityRow(s[3], m.w));
}

fn vQuad(row: u32, quad: u32) -> vec4f { return vec4f(v[row * (D / 4u) + quad]); }

// The 4 keys' quads of V at `quad` (columns: keys row..row+3, clamped to S - 1).
fn vBlock(row: u32, last: u32, quad: u32) -> mat4x4f {
  return mat4x4f(vQuad(min(row, last), quad), vQuad(min(row + 1u, last), quad), vQuad(min(row + 2u, last), quad), vQuad(min(row + 3u, last), quad));
}

// One group of 8 rows (0..3 in the lo matrices, 4..7 in hi, one row per column): this tile's scores, then their
// probabilities; the running max m and sum l; the unnormalised output at the lane's output quads (slots 0 and 1).
struct Group { sLo: mat4x4f, sHi: mat4x4f, mLo: vec4f, mHi: vec4f, lLo: vec4f, lHi: vec4f, lo0: mat4x4f, hi0: mat4x4f, lo1: mat4x4f, hi1: mat4x4f }

fn newGroup() -> Group { return Group(mat4x4f(), mat4x4f(), vec4f(NO_SCORE), vec4f(NO_SCORE), vec4f(0.0), vec4f(0.0), mat4x4f(), mat4x4f(), mat4x4f(), mat4x4f()); }

// Online softmax of a group's tile of scores (rows at positions pos..pos+7, keys jv in this lane; `whole`: all of
// them visible, no mask): the new max, the rescale exp(m_old - m_new) of l and the output, and P in place of s.
fn absorb(g: ptr<function, Group>, whole: bool, pos: u32, jv: vec4u, keys: vec2u) {
  var sLo = (*g).sLo * params.scale;
  var sHi = (*g).sHi * params.scale;
  if (!whole) {
    sLo = masked(sLo, pos, jv, keys);
    sHi = masked(sHi, pos + 4u, jv, keys);
  }
  let mLo = max((*g).mLo, subgroupMax(vec4f(maxOf(sLo[0]), maxOf(sLo[1]), maxOf(sLo[2]), maxOf(sLo[3]))));
  let mHi = max((*g).mHi, subgroupMax(vec4f(maxOf(sHi[0]), maxOf(sHi[1]), maxOf(sHi[2]), maxOf(sHi[3]))));
  (*g).sLo = probabilities(sLo, mLo);
  (*g).sHi = probabilities(sHi, mHi);
  let rescaleLo = exp((*g).mLo - mLo);
  let rescaleHi = exp((*g).mHi - mHi);
  (*g).lLo = (*g).lLo * rescaleLo + subgroupAdd(vec4f(sumOf((*g).sLo[0]), sumOf((*g).sLo[1]), sumOf((*g).sLo[2]), sumOf((*g).sLo[3])));
  (*g).lHi = (*g).lHi * rescaleHi + subgroupAdd(vec4f(sumOf((*g).sHi[0]), sumOf((*g).sHi[1]), sumOf((*g).sHi[2]), sumOf((*g).sHi[3])));
  (*g).mLo = mLo;
  (*g).mHi = mHi;
  (*g).lo0 = scaleColumns((*g).lo0, rescaleLo); (*g).hi0 = scaleColumns((*g).hi0, rescaleHi);
  (*g).lo1 = scaleColumns((*g).lo1, rescaleLo); (*g).hi1 = scaleColumns((*g).hi1, rescaleHi);
}

// out += P V for 4 keys: pLo, pHi their P of the group's rows (one row per column), v0 and v1 their V quads at the
// lane's output quads (one key per column).
fn accumulate(g: ptr<function, Group>, pLo: mat4x4f, pHi: mat4x4f, v0: mat4x4f, v1: mat4x4f) {
  (*g).lo0 = mulAdd4(v0, pLo, (*g).lo0);
  (*g).hi0 = mulAdd4(v0, pHi, (*g).hi0);
  if (SLOTS > 1u) {
    (*g).lo1 = mulAdd4(v1, pLo, (*g).lo1);
    (*g).hi1 = mulAdd4(v1, pHi, (*g).hi1);
  }
}

// Rows r0..r0+3 (those below `rows`) of output quad `quad` (if below D / 4); base: the quad of row 0, dim 0.
fn storeRows(o: mat4x4f, l: vec4f, r0: u32, rows: u32, base: u32, quad: u32) {
  for (var i = 0u; i < 4u; i++) {
    if (r0 + i < rows && quad < D / 4u) { out[base + (r0 + i) * (D / 4u) + quad] = select(vec4f(0.0), o[i] / l[i], l[i] > 0.0); }
  }
}


// The group's rows r0..r0+7 (those below `rows`): out at the lane's output quads, and lse (lane r writes row r0 + r).
fn finish(g: ptr<function, Group>, r0: u32, rows: u32, rowBase: u32, lane: u32) {
  let DQ = D / 4u;
  storeRows((*g).lo0, (*g).lLo, r0, rows, rowBase * DQ, lane);
  storeRows((*g).hi0, (*g).lHi, r0 + 4u, rows, rowBase * DQ, lane);
  if (SLOTS > 1u) {
    storeRows((*g).lo1, (*g).lLo, r0, rows, rowBase * DQ, lane + 8u);
    storeRows((*g).hi1, (*g).lHi, r0 + 4u, rows, rowBase * DQ, lane + 8u);
  }
  let l = select((*g).lHi[lane & 3u], (*g).lLo[lane & 3u], lane < 4u);
  let m = select((*g).mHi[lane & 3u], (*g).mLo[lane & 3u], lane < 4u);
  if (r0 + lane < rows) { lse[rowBase + r0 + lane] = select(NEG_INF_BITS, bitcast<u32>(m + log(l)), l > 0.0); }
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let DQ = D / 4u; // quads per row
  let T = params.T;
  let S = params.S;
  let t0 = wid.x * 16u;
  let h = wid.y;
  let b = wid.z;
  let rows = min(16u, T - t0);
  let rowBase = (b * params.H + h) * T + t0; // query row t0 of (b, h)
  let q1 = (rowBase + min(lane, rows - 1u)) * DQ; // this lane's query rows (clamped), their first quads
  let q2 = (rowBase + min(lane + 8u, rows - 1u)) * DQ;
  let kvRow = (b * params.KVH + h / (params.H / params.KVH)) * S; // key 0 of the kv head
  let last = kvRow + S - 1u;
  let keys = keyRangeOf(b, S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);
  // This lane's output quads, clamped for loading (stored only below DQ).
  let out0 = min(lane, DQ - 1u);
  let out1 = min(lane + 8u, DQ - 1u);

  var g1 = newGroup(); // rows 0..7
  var g2 = newGroup(); // rows 8..15
  // From the tile holding the first visible key (none when the span is empty).
  for (var j0 = select(span.y, span.x - span.x % 32u, span.x < span.y); j0 < span.y; j0 += 32u) {
    // This lane's keys, clamped for loading.
    let j = j0 + 4u * lane;
    let k0 = (kvRow + min(j, S - 1u)) * DQ;
    let k1 = (kvRow + min(j + 1u, S - 1u)) * DQ;
    let k2 = (kvRow + min(j + 2u, S - 1u)) * DQ;
    let k3 = (kvRow + min(j + 3u, S - 1u)) * DQ;
    // s[r][c]: row r, key j + c; rows 0..3, 4..7 of each group.
    var s1Lo = mat4x4f(); var s1Hi = mat4x4f(); var s2Lo = mat4x4f(); var s2Hi = mat4x4f();
    for (var d = 0u; d < DQ; d++) {
      let kT = transpose(mat4x4f(vec4f(k[k0 + d]), vec4f(k[k1 + d]), vec4f(k[k2 + d]), vec4f(k[k3 + d])));
      var qLo: mat4x4f; var qHi: mat4x4f;
      lanesOf(vec4f(q[q1 + d]), &qLo, &qHi);
      s1Lo = mulAdd4(kT, qLo, s1Lo);
      s1Hi = mulAdd4(kT, qHi, s1Hi);
      lanesOf(vec4f(q[q2 + d]), &qLo, &qHi);
      s2Lo = mulAdd4(kT, qLo, s2Lo);
      s2Hi = mulAdd4(kT, qHi, s2Hi);
    }
    g1.sLo = s1Lo; g1.sHi = s1Hi; g2.sLo = s2Lo; g2.sHi = s2Hi;
    // A tile that all 8 rows of a group see whole needs no mask.
    let inRange = j0 >= keys.x && j0 + 32u <= keys.y;
    let whole1 = inRange && (params.causal == 0u || (j0 + 31u <= pos0 && (params.window == 0u || pos0 + 7u - j0 < params.window)));
    let whole2 = inRange && (params.causal == 0u || (j0 + 31u <= pos0 + 8u && (params.window == 0u || pos0 + 15u - j0 < params.window)));
    let jv = vec4u(j, j + 1u, j + 2u, j + 3u);
    absorb(&g1, whole1, pos0, jv, keys);
    absorb(&g2, whole2, pos0 + 8u, jv, keys);
    // P V, lane L's 4 keys at a time (their P of the 16 rows from lane L, their V quads loaded once for both groups);
    // blocks of 4 keys outside the span are skipped (the diagonal tile, the window's first tile).
    let v0 = kvRow + j0;
    if (j0 + 0u < span.y && j0 + 4u > span.x) {
      let va = vBlock(v0, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 0u), subgroupBroadcast(g1.sLo[1], 0u), subgroupBroadcast(g1.sLo[2], 0u), subgroupBroadcast(g1.sLo[3], 0u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 0u), subgroupBroadcast(g1.sHi[1], 0u), subgroupBroadcast(g1.sHi[2], 0u), subgroupBroadcast(g1.sHi[3], 0u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 0u), subgroupBroadcast(g2.sLo[1], 0u), subgroupBroadcast(g2.sLo[2], 0u), subgroupBroadcast(g2.sLo[3], 0u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 0u), subgroupBroadcast(g2.sHi[1], 0u), subgroupBroadcast(g2.sHi[2], 0u), subgroupBroadcast(g2.sHi[3], 0u)), va, vb);
    }
    if (j0 + 4u < span.y && j0 + 8u > span.x) {
      let va = vBlock(v0 + 4u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 4u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 1u), subgroupBroadcast(g1.sLo[1], 1u), subgroupBroadcast(g1.sLo[2], 1u), subgroupBroadcast(g1.sLo[3], 1u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 1u), subgroupBroadcast(g1.sHi[1], 1u), subgroupBroadcast(g1.sHi[2], 1u), subgroupBroadcast(g1.sHi[3], 1u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 1u), subgroupBroadcast(g2.sLo[1], 1u), subgroupBroadcast(g2.sLo[2], 1u), subgroupBroadcast(g2.sLo[3], 1u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 1u), subgroupBroadcast(g2.sHi[1], 1u), subgroupBroadcast(g2.sHi[2], 1u), subgroupBroadcast(g2.sHi[3], 1u)), va, vb);
    }
    if (j0 + 8u < span.y && j0 + 12u > span.x) {
      let va = vBlock(v0 + 8u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 8u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 2u), subgroupBroadcast(g1.sLo[1], 2u), subgroupBroadcast(g1.sLo[2], 2u), subgroupBroadcast(g1.sLo[3], 2u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 2u), subgroupBroadcast(g1.sHi[1], 2u), subgroupBroadcast(g1.sHi[2], 2u), subgroupBroadcast(g1.sHi[3], 2u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 2u), subgroupBroadcast(g2.sLo[1], 2u), subgroupBroadcast(g2.sLo[2], 2u), subgroupBroadcast(g2.sLo[3], 2u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 2u), subgroupBroadcast(g2.sHi[1], 2u), subgroupBroadcast(g2.sHi[2], 2u), subgroupBroadcast(g2.sHi[3], 2u)), va, vb);
    }
    if (j0 + 12u < span.y && j0 + 16u > span.x) {
      let va = vBlock(v0 + 12u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 12u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 3u), subgroupBroadcast(g1.sLo[1], 3u), subgroupBroadcast(g1.sLo[2], 3u), subgroupBroadcast(g1.sLo[3], 3u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 3u), subgroupBroadcast(g1.sHi[1], 3u), subgroupBroadcast(g1.sHi[2], 3u), subgroupBroadcast(g1.sHi[3], 3u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 3u), subgroupBroadcast(g2.sLo[1], 3u), subgroupBroadcast(g2.sLo[2], 3u), subgroupBroadcast(g2.sLo[3], 3u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 3u), subgroupBroadcast(g2.sHi[1], 3u), subgroupBroadcast(g2.sHi[2], 3u), subgroupBroadcast(g2.sHi[3], 3u)), va, vb);
    }
    if (j0 + 16u < span.y && j0 + 20u > span.x) {
      let va = vBlock(v0 + 16u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 16u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 4u), subgroupBroadcast(g1.sLo[1], 4u), subgroupBroadcast(g1.sLo[2], 4u), subgroupBroadcast(g1.sLo[3], 4u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 4u), subgroupBroadcast(g1.sHi[1], 4u), subgroupBroadcast(g1.sHi[2], 4u), subgroupBroadcast(g1.sHi[3], 4u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 4u), subgroupBroadcast(g2.sLo[1], 4u), subgroupBroadcast(g2.sLo[2], 4u), subgroupBroadcast(g2.sLo[3], 4u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 4u), subgroupBroadcast(g2.sHi[1], 4u), subgroupBroadcast(g2.sHi[2], 4u), subgroupBroadcast(g2.sHi[3], 4u)), va, vb);
    }
    if (j0 + 20u < span.y && j0 + 24u > span.x) {
      let va = vBlock(v0 + 20u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 20u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 5u), subgroupBroadcast(g1.sLo[1], 5u), subgroupBroadcast(g1.sLo[2], 5u), subgroupBroadcast(g1.sLo[3], 5u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 5u), subgroupBroadcast(g1.sHi[1], 5u), subgroupBroadcast(g1.sHi[2], 5u), subgroupBroadcast(g1.sHi[3], 5u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 5u), subgroupBroadcast(g2.sLo[1], 5u), subgroupBroadcast(g2.sLo[2], 5u), subgroupBroadcast(g2.sLo[3], 5u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 5u), subgroupBroadcast(g2.sHi[1], 5u), subgroupBroadcast(g2.sHi[2], 5u), subgroupBroadcast(g2.sHi[3], 5u)), va, vb);
    }
    if (j0 + 24u < span.y && j0 + 28u > span.x) {
      let va = vBlock(v0 + 24u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 24u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 6u), subgroupBroadcast(g1.sLo[1], 6u), subgroupBroadcast(g1.sLo[2], 6u), subgroupBroadcast(g1.sLo[3], 6u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 6u), subgroupBroadcast(g1.sHi[1], 6u), subgroupBroadcast(g1.sHi[2], 6u), subgroupBroadcast(g1.sHi[3], 6u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 6u), subgroupBroadcast(g2.sLo[1], 6u), subgroupBroadcast(g2.sLo[2], 6u), subgroupBroadcast(g2.sLo[3], 6u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 6u), subgroupBroadcast(g2.sHi[1], 6u), subgroupBroadcast(g2.sHi[2], 6u), subgroupBroadcast(g2.sHi[3], 6u)), va, vb);
    }
    if (j0 + 28u < span.y && j0 + 32u > span.x) {
      let va = vBlock(v0 + 28u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = vBlock(v0 + 28u, last, out1); }
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 7u), subgroupBroadcast(g1.sLo[1], 7u), subgroupBroadcast(g1.sLo[2], 7u), subgroupBroadcast(g1.sLo[3], 7u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 7u), subgroupBroadcast(g1.sHi[1], 7u), subgroupBroadcast(g1.sHi[2], 7u), subgroupBroadcast(g1.sHi[3], 7u)), va, vb);
      accumulate(&g2, mat4x4f(subgroupBroadcast(g2.sLo[0], 7u), subgroupBroadcast(g2.sLo[1], 7u), subgroupBroadcast(g2.sLo[2], 7u), subgroupBroadcast(g2.sLo[3], 7u)),
        mat4x4f(subgroupBroadcast(g2.sHi[0], 7u), subgroupBroadcast(g2.sHi[1], 7u), subgroupBroadcast(g2.sHi[2], 7u), subgroupBroadcast(g2.sHi[3], 7u)), va, vb);
    }
  }

  finish(&g1, 0u, rows, rowBase, lane);
  finish(&g2, 8u, rows, rowBase, lane);
}
