// Attention backward, dQ (attention_backward_dq.wgsl's) for SIMD CPUs, in the manner of attention_forward_rows.wgsl:
// the forward was out = P V per query row, P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dQ = scale · dS K,
// with P recomputed from Q, K and the saved lse, and delta = rowsum(dO ∘ O) (attention_delta.wgsl).
// A workgroup is one subgroup of 8 lanes owning 16 query rows of one (query head, batch row), as two groups of 8
// rows sharing every load of K and V; it walks the key tiles of 32 keys that hold a key visible to one of its rows,
// lane L owning keys j0+4L..j0+4L+3. Per quad of dims each lane loads its 4 keys' quads of K and of V and its rows'
// quads of Q and dO (broadcast to all lanes): S and dP, 12 loads for 512 multiply-adds. dQ += dS K as the forward's
// P V: lanes own output quads of dims; lane L's dS of the 16 rows is broadcast and each lane loads those 4 keys' K
// quads at its dims, skipping the blocks of 4 keys that no row sees (dQ runs over 16 × 4 tiles, S and dP over 16 × 32).
// No online softmax and no reduction: lse and delta are known. It sums in the order of attention_backward_dq.wgsl
// (over dims, then keys, one fma at a time), so that the two give the same bits. Rows past T and keys past S load
// a clamped, valid quad and store nothing; f32 q, k, v, dout (D a multiple of 4, up to 64). Needs subgroups of
// exactly 8 invocations (attentionRowsUnfit).
@group(0) @binding(0) var<storage, read> q: array<vec4f>; // [B, H, T, D]
@group(0) @binding(1) var<storage, read> k: array<vec4f>; // [B, KVH, S, D]
@group(0) @binding(2) var<storage, read> v: array<vec4f>;
@group(0) @binding(3) var<storage, read> dout: array<vec4f>; // [B, H, T, D]
@group(0) @binding(4) var<storage, read> lse: array<f32>; // [B, H, T]
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, T]
// binding 6: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(7) var<storage, read_write> dq: array<vec4f>; // [B, H, T, D]
@group(0) @binding(8) var<uniform> params: Params;

// Lanes first..first+3's values (first 0 or 4).
fn lanes4(mine: f32, first: u32) -> vec4f {
  if (first == 0u) { return vec4f(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u)); }
  return vec4f(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}
// dS = P ∘ (dP - delta), P = exp(s - lse), for 4 rows (columns).
fn dsOf(s: mat4x4f, dp: mat4x4f, l: vec4f, dl: vec4f) -> mat4x4f {
  return mat4x4f(exp(s[0] - vec4f(l.x)) * (dp[0] - vec4f(dl.x)), exp(s[1] - vec4f(l.y)) * (dp[1] - vec4f(dl.y)),
    exp(s[2] - vec4f(l.z)) * (dp[2] - vec4f(dl.z)), exp(s[3] - vec4f(l.w)) * (dp[3] - vec4f(dl.w)));
}
// The 4 keys' quads of K at `quad` (columns: keys row..row+3, clamped to `last`).
fn kBlock(row: u32, last: u32, quad: u32) -> mat4x4f {
  let DQ = D / 4u;
  return mat4x4f(k[min(row, last) * DQ + quad], k[min(row + 1u, last) * DQ + quad], k[min(row + 2u, last) * DQ + quad], k[min(row + 3u, last) * DQ + quad]);
}
// One group of 8 rows (0..3 in the lo matrices, 4..7 in hi, one row per column): this tile's dS; lse and delta of
// the rows; dQ at the lane's output quads (slots 0 and 1), unscaled.
struct Group { sLo: mat4x4f, sHi: mat4x4f, lLo: vec4f, lHi: vec4f, dLo: vec4f, dHi: vec4f, lo0: mat4x4f, hi0: mat4x4f, lo1: mat4x4f, hi1: mat4x4f }

// dQ += dS K for 4 keys: pLo, pHi their dS of the group's rows, v0 and v1 their K quads at the lane's output quads.
fn accumulate(g: ptr<function, Group>, pLo: mat4x4f, pHi: mat4x4f, v0: mat4x4f, v1: mat4x4f) {
  (*g).lo0 = mulAdd4(v0, pLo, (*g).lo0);
  (*g).hi0 = mulAdd4(v0, pHi, (*g).hi0);
  if (SLOTS > 1u) {
    (*g).lo1 = mulAdd4(v1, pLo, (*g).lo1);
    (*g).hi1 = mulAdd4(v1, pHi, (*g).hi1);
  }
}
// Rows r0..r0+3 (those below `rows`) of dQ at output quad `quad` (if below D / 4), times scale.
fn storeRows(o: mat4x4f, r0: u32, rows: u32, base: u32, quad: u32) {
  for (var i = 0u; i < 4u; i++) {
    if (r0 + i < rows && quad < D / 4u) { dq[base + (r0 + i) * (D / 4u) + quad] = o[i] * params.scale; }
  }
}
// The group's rows r0..r0+7 (those below `rows`) of dQ.
fn finish(g: ptr<function, Group>, r0: u32, rows: u32, rowBase: u32, lane: u32) {
  let DQ = D / 4u;
  storeRows((*g).lo0, r0, rows, rowBase * DQ, lane);
  storeRows((*g).hi0, r0 + 4u, rows, rowBase * DQ, lane);
  if (SLOTS > 1u) {
    storeRows((*g).lo1, r0, rows, rowBase * DQ, lane + 8u);
    storeRows((*g).hi1, r0 + 4u, rows, rowBase * DQ, lane + 8u);
  }
}
// lse and delta of a group's rows (the same in every lane); a row that sees no key (lse -inf) takes 0.
fn rowStats(g: ptr<function, Group>, row: u32) {
  let l = lse[row];
  let mine = select(l, 0.0, bitcast<u32>(l) == NEG_INF_BITS);
  (*g).lLo = lanes4(mine, 0u); (*g).lHi = lanes4(mine, 4u);
  let dl = delta[row];
  (*g).dLo = lanes4(dl, 0u); (*g).dHi = lanes4(dl, 4u);
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let DQ = D / 4u;
  let T = params.T;
  let S = params.S;
  let t0 = wid.x * 16u;
  let h = wid.y;
  let b = wid.z;
  let rows = min(16u, T - t0);
  let rowBase = (b * params.H + h) * T + t0;
  // This lane's query rows in each group (clamped).
  let row0 = rowBase + min(lane, rows - 1u);
  let row1 = rowBase + min(lane + 8u, rows - 1u);
  let kvRow = (b * params.KVH + h / (params.H / params.KVH)) * S;
  let last = kvRow + S - 1u;
  let keys = keyRangeOf(b, S);
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);
  let out0 = min(lane, DQ - 1u);
  let out1 = min(lane + 8u, DQ - 1u);
  var g0: Group; // rows 0..7
  rowStats(&g0, row0);
  var g1: Group; // rows 8..15
  rowStats(&g1, row1);
  // From the tile holding the first visible key (none when the span is empty).
  for (var j0 = select(span.y, span.x - span.x % 32u, span.x < span.y); j0 < span.y; j0 += 32u) {
    let j = j0 + 4u * lane;
    let k0 = (kvRow + min(j, S - 1u)) * DQ;
    let k1 = (kvRow + min(j + 1u, S - 1u)) * DQ;
    let k2 = (kvRow + min(j + 2u, S - 1u)) * DQ;
    let k3 = (kvRow + min(j + 3u, S - 1u)) * DQ;
    // S and dP of row r, key j + c at [r][c]; rows 0..3, 4..7 of each group.
    var s0Lo = mat4x4f(); var s0Hi = mat4x4f(); var p0Lo = mat4x4f(); var p0Hi = mat4x4f();
    var s1Lo = mat4x4f(); var s1Hi = mat4x4f(); var p1Lo = mat4x4f(); var p1Hi = mat4x4f();
    for (var d = 0u; d < DQ; d++) {
      let kT = transpose(mat4x4f(k[k0 + d], k[k1 + d], k[k2 + d], k[k3 + d]));
      let vT = transpose(mat4x4f(v[k0 + d], v[k1 + d], v[k2 + d], v[k3 + d]));
      var lo: mat4x4f; var hi: mat4x4f;
      lanesOf(q[row0 * DQ + d], &lo, &hi);
      s0Lo = mulAdd4(kT, lo, s0Lo);
      s0Hi = mulAdd4(kT, hi, s0Hi);
      lanesOf(dout[row0 * DQ + d], &lo, &hi);
      p0Lo = mulAdd4(vT, lo, p0Lo);
      p0Hi = mulAdd4(vT, hi, p0Hi);
      lanesOf(q[row1 * DQ + d], &lo, &hi);
      s1Lo = mulAdd4(kT, lo, s1Lo);
      s1Hi = mulAdd4(kT, hi, s1Hi);
      lanesOf(dout[row1 * DQ + d], &lo, &hi);
      p1Lo = mulAdd4(vT, lo, p1Lo);
      p1Hi = mulAdd4(vT, hi, p1Hi);
    }
    // Scaled scores; a tile that all 8 rows of a group see whole needs no mask (masked: NO_SCORE, so P = 0).
    let inRange = j0 >= keys.x && j0 + 32u <= keys.y;
    let jv = vec4u(j, j + 1u, j + 2u, j + 3u);
    s0Lo = s0Lo * params.scale; s0Hi = s0Hi * params.scale;
    if (!(inRange && (params.causal == 0u || (j0 + 31u <= pos0 + 0u && (params.window == 0u || pos0 + 7u - j0 < params.window))))) {
      s0Lo = masked(s0Lo, pos0 + 0u, jv, keys);
      s0Hi = masked(s0Hi, pos0 + 4u, jv, keys);
    }
    g0.sLo = dsOf(s0Lo, p0Lo, g0.lLo, g0.dLo);
    g0.sHi = dsOf(s0Hi, p0Hi, g0.lHi, g0.dHi);
    s1Lo = s1Lo * params.scale; s1Hi = s1Hi * params.scale;
    if (!(inRange && (params.causal == 0u || (j0 + 31u <= pos0 + 8u && (params.window == 0u || pos0 + 15u - j0 < params.window))))) {
      s1Lo = masked(s1Lo, pos0 + 8u, jv, keys);
      s1Hi = masked(s1Hi, pos0 + 12u, jv, keys);
    }
    g1.sLo = dsOf(s1Lo, p1Lo, g1.lLo, g1.dLo);
    g1.sHi = dsOf(s1Hi, p1Hi, g1.lHi, g1.dHi);
    // dQ += dS K, lane L's 4 keys at a time (their dS of the 16 rows from lane L); blocks outside the span skipped.
    let v0 = kvRow + j0;
    if (j0 + 0u < span.y && j0 + 4u > span.x) {
      let va = kBlock(v0, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 0u), subgroupBroadcast(g0.sLo[1], 0u), subgroupBroadcast(g0.sLo[2], 0u), subgroupBroadcast(g0.sLo[3], 0u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 0u), subgroupBroadcast(g0.sHi[1], 0u), subgroupBroadcast(g0.sHi[2], 0u), subgroupBroadcast(g0.sHi[3], 0u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 0u), subgroupBroadcast(g1.sLo[1], 0u), subgroupBroadcast(g1.sLo[2], 0u), subgroupBroadcast(g1.sLo[3], 0u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 0u), subgroupBroadcast(g1.sHi[1], 0u), subgroupBroadcast(g1.sHi[2], 0u), subgroupBroadcast(g1.sHi[3], 0u)), va, vb);
    }
    if (j0 + 4u < span.y && j0 + 8u > span.x) {
      let va = kBlock(v0 + 4u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 4u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 1u), subgroupBroadcast(g0.sLo[1], 1u), subgroupBroadcast(g0.sLo[2], 1u), subgroupBroadcast(g0.sLo[3], 1u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 1u), subgroupBroadcast(g0.sHi[1], 1u), subgroupBroadcast(g0.sHi[2], 1u), subgroupBroadcast(g0.sHi[3], 1u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 1u), subgroupBroadcast(g1.sLo[1], 1u), subgroupBroadcast(g1.sLo[2], 1u), subgroupBroadcast(g1.sLo[3], 1u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 1u), subgroupBroadcast(g1.sHi[1], 1u), subgroupBroadcast(g1.sHi[2], 1u), subgroupBroadcast(g1.sHi[3], 1u)), va, vb);
    }
    if (j0 + 8u < span.y && j0 + 12u > span.x) {
      let va = kBlock(v0 + 8u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 8u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 2u), subgroupBroadcast(g0.sLo[1], 2u), subgroupBroadcast(g0.sLo[2], 2u), subgroupBroadcast(g0.sLo[3], 2u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 2u), subgroupBroadcast(g0.sHi[1], 2u), subgroupBroadcast(g0.sHi[2], 2u), subgroupBroadcast(g0.sHi[3], 2u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 2u), subgroupBroadcast(g1.sLo[1], 2u), subgroupBroadcast(g1.sLo[2], 2u), subgroupBroadcast(g1.sLo[3], 2u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 2u), subgroupBroadcast(g1.sHi[1], 2u), subgroupBroadcast(g1.sHi[2], 2u), subgroupBroadcast(g1.sHi[3], 2u)), va, vb);
    }
    if (j0 + 12u < span.y && j0 + 16u > span.x) {
      let va = kBlock(v0 + 12u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 12u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 3u), subgroupBroadcast(g0.sLo[1], 3u), subgroupBroadcast(g0.sLo[2], 3u), subgroupBroadcast(g0.sLo[3], 3u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 3u), subgroupBroadcast(g0.sHi[1], 3u), subgroupBroadcast(g0.sHi[2], 3u), subgroupBroadcast(g0.sHi[3], 3u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 3u), subgroupBroadcast(g1.sLo[1], 3u), subgroupBroadcast(g1.sLo[2], 3u), subgroupBroadcast(g1.sLo[3], 3u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 3u), subgroupBroadcast(g1.sHi[1], 3u), subgroupBroadcast(g1.sHi[2], 3u), subgroupBroadcast(g1.sHi[3], 3u)), va, vb);
    }
    if (j0 + 16u < span.y && j0 + 20u > span.x) {
      let va = kBlock(v0 + 16u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 16u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 4u), subgroupBroadcast(g0.sLo[1], 4u), subgroupBroadcast(g0.sLo[2], 4u), subgroupBroadcast(g0.sLo[3], 4u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 4u), subgroupBroadcast(g0.sHi[1], 4u), subgroupBroadcast(g0.sHi[2], 4u), subgroupBroadcast(g0.sHi[3], 4u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 4u), subgroupBroadcast(g1.sLo[1], 4u), subgroupBroadcast(g1.sLo[2], 4u), subgroupBroadcast(g1.sLo[3], 4u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 4u), subgroupBroadcast(g1.sHi[1], 4u), subgroupBroadcast(g1.sHi[2], 4u), subgroupBroadcast(g1.sHi[3], 4u)), va, vb);
    }
    if (j0 + 20u < span.y && j0 + 24u > span.x) {
      let va = kBlock(v0 + 20u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 20u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 5u), subgroupBroadcast(g0.sLo[1], 5u), subgroupBroadcast(g0.sLo[2], 5u), subgroupBroadcast(g0.sLo[3], 5u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 5u), subgroupBroadcast(g0.sHi[1], 5u), subgroupBroadcast(g0.sHi[2], 5u), subgroupBroadcast(g0.sHi[3], 5u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 5u), subgroupBroadcast(g1.sLo[1], 5u), subgroupBroadcast(g1.sLo[2], 5u), subgroupBroadcast(g1.sLo[3], 5u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 5u), subgroupBroadcast(g1.sHi[1], 5u), subgroupBroadcast(g1.sHi[2], 5u), subgroupBroadcast(g1.sHi[3], 5u)), va, vb);
    }
    if (j0 + 24u < span.y && j0 + 28u > span.x) {
      let va = kBlock(v0 + 24u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 24u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 6u), subgroupBroadcast(g0.sLo[1], 6u), subgroupBroadcast(g0.sLo[2], 6u), subgroupBroadcast(g0.sLo[3], 6u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 6u), subgroupBroadcast(g0.sHi[1], 6u), subgroupBroadcast(g0.sHi[2], 6u), subgroupBroadcast(g0.sHi[3], 6u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 6u), subgroupBroadcast(g1.sLo[1], 6u), subgroupBroadcast(g1.sLo[2], 6u), subgroupBroadcast(g1.sLo[3], 6u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 6u), subgroupBroadcast(g1.sHi[1], 6u), subgroupBroadcast(g1.sHi[2], 6u), subgroupBroadcast(g1.sHi[3], 6u)), va, vb);
    }
    if (j0 + 28u < span.y && j0 + 32u > span.x) {
      let va = kBlock(v0 + 28u, last, out0);
      var vb = mat4x4f();
      if (SLOTS > 1u) { vb = kBlock(v0 + 28u, last, out1); }
      accumulate(&g0, mat4x4f(subgroupBroadcast(g0.sLo[0], 7u), subgroupBroadcast(g0.sLo[1], 7u), subgroupBroadcast(g0.sLo[2], 7u), subgroupBroadcast(g0.sLo[3], 7u)),
        mat4x4f(subgroupBroadcast(g0.sHi[0], 7u), subgroupBroadcast(g0.sHi[1], 7u), subgroupBroadcast(g0.sHi[2], 7u), subgroupBroadcast(g0.sHi[3], 7u)), va, vb);
      accumulate(&g1, mat4x4f(subgroupBroadcast(g1.sLo[0], 7u), subgroupBroadcast(g1.sLo[1], 7u), subgroupBroadcast(g1.sLo[2], 7u), subgroupBroadcast(g1.sLo[3], 7u)),
        mat4x4f(subgroupBroadcast(g1.sHi[0], 7u), subgroupBroadcast(g1.sHi[1], 7u), subgroupBroadcast(g1.sHi[2], 7u), subgroupBroadcast(g1.sHi[3], 7u)), va, vb);
    }
  }
  finish(&g0, 0u, rows, rowBase, lane);
  finish(&g1, 8u, rows, rowBase, lane);
}
