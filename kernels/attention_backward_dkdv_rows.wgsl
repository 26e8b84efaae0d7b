// Attention backward, dK and dV (attention_backward_dkdv.wgsl's) for SIMD CPUs, in the manner of
// attention_forward_rows.wgsl with the roles of queries and keys exchanged: the forward was out = P V per query row,
// P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dK = scale · dSᵀ Q,
// with P recomputed from Q, K and the saved lse, and delta = rowsum(dO ∘ O) (attention_delta.wgsl).
// A workgroup is one subgroup of 8 lanes owning 16 keys j0..j0+15 of one (kv head, batch row), as two groups of 8
// keys (a: 0..7, b: 8..15) sharing every load of Q and dO; it loops over the H / KVH query heads that read this kv
// head and over their query tiles of 32 rows that see one of its keys (seeingRowSpan), lane L owning rows
// t0+4L..t0+4L+3, and accumulates dK and dV in registers: no atomics, a fixed order, deterministic.
//   Sᵀ and dPᵀ: per quad of dims each lane loads its 4 rows' quads of Q and of dO and its keys' quads of K and V
//     (broadcast to all lanes): 12 loads for 512 multiply-adds.
//   dV and dK: lanes own output quads of dims (lane + 8·slot); lane L's P and dS of the 16 keys are broadcast and
//     each lane loads those 4 rows' dO and Q quads at its dims, skipping the blocks of 4 rows that see none of the
//     keys (dV and dK run over 4 × 16 tiles, S and dP over 32 × 16).
// It sums in the order of attention_backward_dkdv.wgsl (over dims, then rows, one fma at a time), so that the two
// give the same bits. Rows past T and keys past S load a clamped, valid quad; rows past T are masked (they would
// add to dK and dV) and keys past S are not stored; f32 q, k, v, dout (D a multiple of 4, up to 64). Needs subgroups
// of exactly 8 invocations (attentionRowsUnfit). 16 keys beat 8 by 1.1-1.5x on lavapipe (D64, T64 to T512).
@group(0) @binding(0) var<storage, read> q: array<vec4f>; // [B, H, T, D]
@group(0) @binding(1) var<storage, read> k: array<vec4f>; // [B, KVH, S, D]
@group(0) @binding(2) var<storage, read> v: array<vec4f>;
@group(0) @binding(3) var<storage, read> dout: array<vec4f>; // [B, H, T, D]
@group(0) @binding(4) var<storage, read> lse: array<f32>; // [B, H, T]
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, T]
// binding 6: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(7) var<storage, read_write> dk: array<vec4f>; // [B, KVH, S, D]
@group(0) @binding(8) var<storage, read_write> dv: array<vec4f>;
@group(0) @binding(9) var<uniform> params: Params;

// Scores of one key j for 4 query rows at positions pos (NO_SCORE where not visible, or the row is past T).
fn maskedKey(s: vec4f, pos: vec4u, t: vec4u, j: u32, keys: vec2u) -> vec4f {
  let c = params.causal;
  let w = params.window;
  let T = params.T;
  return select(vec4f(NO_SCORE), s, vec4<bool>(t.x < T && keyVisible(pos.x, j, keys, c, w), t.y < T && keyVisible(pos.y, j, keys, c, w),
    t.z < T && keyVisible(pos.z, j, keys, c, w), t.w < T && keyVisible(pos.w, j, keys, c, w)));
}

// Keys j..j+3 (the columns of s) for the lane's 4 rows.
fn maskedKeys(s: mat4x4f, pos: vec4u, t: vec4u, j: u32, keys: vec2u) -> mat4x4f {
  return mat4x4f(maskedKey(s[0], pos, t, j, keys), maskedKey(s[1], pos, t, j + 1u, keys), maskedKey(s[2], pos, t, j + 2u, keys), maskedKey(s[3], pos, t, j + 3u, keys));
}

// P = exp(s - lse) per key (column), over the lane's 4 rows (lse per row).
fn probabilities(s: mat4x4f, l: vec4f) -> mat4x4f {
  return mat4x4f(exp(s[0] - l), exp(s[1] - l), exp(s[2] - l), exp(s[3] - l));
}
// dS = P ∘ (dP - delta) per key (column), over the lane's 4 rows (delta per row).
fn gradients(p: mat4x4f, dp: mat4x4f, dl: vec4f) -> mat4x4f {
  return mat4x4f(p[0] * (dp[0] - dl), p[1] * (dp[1] - dl), p[2] * (dp[2] - dl), p[3] * (dp[3] - dl));
}

// Quads at `quad` of 4 query rows row..row+3 (clamped to `last`): one row per column.
fn qBlock(row: u32, last: u32, quad: u32) -> mat4x4f {
  let DQ = D / 4u;
  return mat4x4f(q[min(row, last) * DQ + quad], q[min(row + 1u, last) * DQ + quad], q[min(row + 2u, last) * DQ + quad], q[min(row + 3u, last) * DQ + quad]);
}
// The same of dO.
fn doBlock(row: u32, last: u32, quad: u32) -> mat4x4f {
  let DQ = D / 4u;
  return mat4x4f(dout[min(row, last) * DQ + quad], dout[min(row + 1u, last) * DQ + quad], dout[min(row + 2u, last) * DQ + quad], dout[min(row + 3u, last) * DQ + quad]);
}

// dV and dK of the 8 keys (0..3 in lo, 4..7 in hi, one key per column) at the lane's output quads (slots 0 and 1).
struct Acc { vLo0: mat4x4f, vHi0: mat4x4f, vLo1: mat4x4f, vHi1: mat4x4f, kLo0: mat4x4f, kHi0: mat4x4f, kLo1: mat4x4f, kHi1: mat4x4f }

// dV += Pᵀ dO, dK += dSᵀ Q for 4 query rows: p*, ds* their P and dS of 8 keys (one key per column, a vec4 over the
// rows), o0, o1 their dO quads and q0, q1 their Q quads at the lane's output quads (one row per column).
fn accumulate(a: ptr<function, Acc>, pLo: mat4x4f, pHi: mat4x4f, dsLo: mat4x4f, dsHi: mat4x4f, o0: mat4x4f, q0: mat4x4f, o1: mat4x4f, q1: mat4x4f) {
  (*a).vLo0 = mulAdd4(o0, pLo, (*a).vLo0);
  (*a).vHi0 = mulAdd4(o0, pHi, (*a).vHi0);
  (*a).kLo0 = mulAdd4(q0, dsLo, (*a).kLo0);
  (*a).kHi0 = mulAdd4(q0, dsHi, (*a).kHi0);
  if (SLOTS > 1u) {
    (*a).vLo1 = mulAdd4(o1, pLo, (*a).vLo1);
    (*a).vHi1 = mulAdd4(o1, pHi, (*a).vHi1);
    (*a).kLo1 = mulAdd4(q1, dsLo, (*a).kLo1);
    (*a).kHi1 = mulAdd4(q1, dsHi, (*a).kHi1);
  }
}

// Keys j0 + c0..c0+3 (those below `nKeys`) of dK (times scale) and dV at output quad `quad` (if below D / 4).
fn storeKeys(dkv: mat4x4f, dvv: mat4x4f, c0: u32, nKeys: u32, base: u32, quad: u32) {
  for (var i = 0u; i < 4u; i++) {
    if (c0 + i < nKeys && quad < D / 4u) {
      dk[base + (c0 + i) * (D / 4u) + quad] = dkv[i] * params.scale;
      dv[base + (c0 + i) * (D / 4u) + quad] = dvv[i];
    }
  }
}

// lse of a row (clamped to `last`), 0 where -inf: such a row sees no key, all its entries are masked.
fn rowLse(row: u32, last: u32) -> f32 { let l = lse[min(row, last)]; return select(l, 0.0, bitcast<u32>(l) == NEG_INF_BITS); }

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let DQ = D / 4u;
  let T = params.T;
  let S = params.S;
  let j0 = wid.x * 16u;
  let kvh = wid.y;
  let b = wid.z;
  let nKeys = min(16u, S - j0);
  let keyBase = (b * params.KVH + kvh) * S + j0;
  let kA = (keyBase + min(lane, nKeys - 1u)) * DQ; // this lane's keys (clamped) in each group, their first quads
  let kB = (keyBase + min(lane + 8u, nKeys - 1u)) * DQ;
  let keys = keyRangeOf(b, S);
  var rowSpan = seeingRowSpan(j0, j0 + nKeys - 1u, T, params.positionOffset, params.causal, params.window);
  if (keys.y <= j0 || keys.x >= j0 + nKeys) { rowSpan = vec2u(0u, 0u); } // padding hides the whole tile
  // This lane's output quads, clamped for loading (stored only below DQ).
  let out0 = min(lane, DQ - 1u);
  let out1 = min(lane + 8u, DQ - 1u);
  var accA: Acc; // keys 0..7
  var accB: Acc; // keys 8..15
  let G = params.H / params.KVH;
  for (var g = 0u; g < G; g++) {
    let rowBase = (b * params.H + kvh * G + g) * T; // query row 0 of head kvh·G + g
    let last = rowBase + T - 1u;
    // From the query tile holding the first row that sees a key (none when the span is empty).
    for (var t0 = select(rowSpan.y, rowSpan.x - rowSpan.x % 32u, rowSpan.x < rowSpan.y); t0 < rowSpan.y; t0 += 32u) {
      // This lane's query rows t..t+3, clamped for loading.
      let t = t0 + 4u * lane;
      let r0 = (min(rowBase + t, last)) * DQ;
      let r1 = (min(rowBase + t + 1u, last)) * DQ;
      let r2 = (min(rowBase + t + 2u, last)) * DQ;
      let r3 = (min(rowBase + t + 3u, last)) * DQ;
      // Sᵀ of key i, row t + c at aLo[i][c] (keys 0..3 of group a; 4..7 in aHi; group b likewise), dPᵀ in ap*, bp*.
      var aLo = mat4x4f(); var aHi = mat4x4f(); var apLo = mat4x4f(); var apHi = mat4x4f();
      var bLo = mat4x4f(); var bHi = mat4x4f(); var bpLo = mat4x4f(); var bpHi = mat4x4f();
      for (var d = 0u; d < DQ; d++) {
        let qT = transpose(mat4x4f(q[r0 + d], q[r1 + d], q[r2 + d], q[r3 + d]));
        let oT = transpose(mat4x4f(dout[r0 + d], dout[r1 + d], dout[r2 + d], dout[r3 + d]));
        var lo: mat4x4f; var hi: mat4x4f;
        lanesOf(k[kA + d], &lo, &hi);
        aLo = mulAdd4(qT, lo, aLo); aHi = mulAdd4(qT, hi, aHi);
        lanesOf(v[kA + d], &lo, &hi);
        apLo = mulAdd4(oT, lo, apLo); apHi = mulAdd4(oT, hi, apHi);
        lanesOf(k[kB + d], &lo, &hi);
        bLo = mulAdd4(qT, lo, bLo); bHi = mulAdd4(qT, hi, bHi);
        lanesOf(v[kB + d], &lo, &hi);
        bpLo = mulAdd4(oT, lo, bpLo); bpHi = mulAdd4(oT, hi, bpHi);
      }
      aLo = aLo * params.scale; aHi = aHi * params.scale; bLo = bLo * params.scale; bHi = bHi * params.scale;
      // A group whose keys all 32 rows (all below T) see needs no mask.
      let pos = t0 + params.positionOffset;
      let rowsIn = t0 + 32u <= T;
      let wholeA = rowsIn && j0 >= keys.x && j0 + 8u <= keys.y
        && (params.causal == 0u || (j0 + 7u <= pos && (params.window == 0u || pos + 31u - j0 < params.window)));
      let wholeB = rowsIn && j0 + 8u >= keys.x && j0 + 16u <= keys.y
        && (params.causal == 0u || (j0 + 15u <= pos && (params.window == 0u || pos + 31u - j0 - 8u < params.window)));
      let tv = vec4u(t, t + 1u, t + 2u, t + 3u);
      let posv = tv + vec4u(params.positionOffset);
      if (!wholeA) { aLo = maskedKeys(aLo, posv, tv, j0, keys); aHi = maskedKeys(aHi, posv, tv, j0 + 4u, keys); }
      if (!wholeB) { bLo = maskedKeys(bLo, posv, tv, j0 + 8u, keys); bHi = maskedKeys(bHi, posv, tv, j0 + 12u, keys); }
      let l = vec4f(rowLse(rowBase + t, last), rowLse(rowBase + t + 1u, last), rowLse(rowBase + t + 2u, last), rowLse(rowBase + t + 3u, last));
      let dl = vec4f(delta[min(rowBase + t, last)], delta[min(rowBase + t + 1u, last)], delta[min(rowBase + t + 2u, last)], delta[min(rowBase + t + 3u, last)]);
      // P and dS per key (column), over the lane's rows.
      let paLo = probabilities(aLo, l); let paHi = probabilities(aHi, l);
      let pbLo = probabilities(bLo, l); let pbHi = probabilities(bHi, l);
      let daLo = gradients(paLo, apLo, dl); let daHi = gradients(paHi, apHi, dl);
      let dbLo = gradients(pbLo, bpLo, dl); let dbHi = gradients(pbHi, bpHi, dl);
      // dV += Pᵀ dO and dK += dSᵀ Q, lane L's 4 rows at a time (their P and dS of the 16 keys from lane L, their dO and Q
      // quads loaded once for both groups); blocks of 4 rows that see none of the keys are skipped.
      if (t0 + 0u < rowSpan.y && t0 + 4u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0, last, out0);
        let q0 = qBlock(rowBase + t0, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0, last, out1); q1 = qBlock(rowBase + t0, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 0u), subgroupBroadcast(paLo[1], 0u), subgroupBroadcast(paLo[2], 0u), subgroupBroadcast(paLo[3], 0u)), mat4x4f(subgroupBroadcast(paHi[0], 0u), subgroupBroadcast(paHi[1], 0u), subgroupBroadcast(paHi[2], 0u), subgroupBroadcast(paHi[3], 0u)), mat4x4f(subgroupBroadcast(daLo[0], 0u), subgroupBroadcast(daLo[1], 0u), subgroupBroadcast(daLo[2], 0u), subgroupBroadcast(daLo[3], 0u)), mat4x4f(subgroupBroadcast(daHi[0], 0u), subgroupBroadcast(daHi[1], 0u), subgroupBroadcast(daHi[2], 0u), subgroupBroadcast(daHi[3], 0u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 0u), subgroupBroadcast(pbLo[1], 0u), subgroupBroadcast(pbLo[2], 0u), subgroupBroadcast(pbLo[3], 0u)), mat4x4f(subgroupBroadcast(pbHi[0], 0u), subgroupBroadcast(pbHi[1], 0u), subgroupBroadcast(pbHi[2], 0u), subgroupBroadcast(pbHi[3], 0u)), mat4x4f(subgroupBroadcast(dbLo[0], 0u), subgroupBroadcast(dbLo[1], 0u), subgroupBroadcast(dbLo[2], 0u), subgroupBroadcast(dbLo[3], 0u)), mat4x4f(subgroupBroadcast(dbHi[0], 0u), subgroupBroadcast(dbHi[1], 0u), subgroupBroadcast(dbHi[2], 0u), subgroupBroadcast(dbHi[3], 0u)), o0, q0, o1, q1);
      }
      if (t0 + 4u < rowSpan.y && t0 + 8u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 4u, last, out0);
        let q0 = qBlock(rowBase + t0 + 4u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 4u, last, out1); q1 = qBlock(rowBase + t0 + 4u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 1u), subgroupBroadcast(paLo[1], 1u), subgroupBroadcast(paLo[2], 1u), subgroupBroadcast(paLo[3], 1u)), mat4x4f(subgroupBroadcast(paHi[0], 1u), subgroupBroadcast(paHi[1], 1u), subgroupBroadcast(paHi[2], 1u), subgroupBroadcast(paHi[3], 1u)), mat4x4f(subgroupBroadcast(daLo[0], 1u), subgroupBroadcast(daLo[1], 1u), subgroupBroadcast(daLo[2], 1u), subgroupBroadcast(daLo[3], 1u)), mat4x4f(subgroupBroadcast(daHi[0], 1u), subgroupBroadcast(daHi[1], 1u), subgroupBroadcast(daHi[2], 1u), subgroupBroadcast(daHi[3], 1u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 1u), subgroupBroadcast(pbLo[1], 1u), subgroupBroadcast(pbLo[2], 1u), subgroupBroadcast(pbLo[3], 1u)), mat4x4f(subgroupBroadcast(pbHi[0], 1u), subgroupBroadcast(pbHi[1], 1u), subgroupBroadcast(pbHi[2], 1u), subgroupBroadcast(pbHi[3], 1u)), mat4x4f(subgroupBroadcast(dbLo[0], 1u), subgroupBroadcast(dbLo[1], 1u), subgroupBroadcast(dbLo[2], 1u), subgroupBroadcast(dbLo[3], 1u)), mat4x4f(subgroupBroadcast(dbHi[0], 1u), subgroupBroadcast(dbHi[1], 1u), subgroupBroadcast(dbHi[2], 1u), subgroupBroadcast(dbHi[3], 1u)), o0, q0, o1, q1);
      }
      if (t0 + 8u < rowSpan.y && t0 + 12u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 8u, last, out0);
        let q0 = qBlock(rowBase + t0 + 8u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 8u, last, out1); q1 = qBlock(rowBase + t0 + 8u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 2u), subgroupBroadcast(paLo[1], 2u), subgroupBroadcast(paLo[2], 2u), subgroupBroadcast(paLo[3], 2u)), mat4x4f(subgroupBroadcast(paHi[0], 2u), subgroupBroadcast(paHi[1], 2u), subgroupBroadcast(paHi[2], 2u), subgroupBroadcast(paHi[3], 2u)), mat4x4f(subgroupBroadcast(daLo[0], 2u), subgroupBroadcast(daLo[1], 2u), subgroupBroadcast(daLo[2], 2u), subgroupBroadcast(daLo[3], 2u)), mat4x4f(subgroupBroadcast(daHi[0], 2u), subgroupBroadcast(daHi[1], 2u), subgroupBroadcast(daHi[2], 2u), subgroupBroadcast(daHi[3], 2u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 2u), subgroupBroadcast(pbLo[1], 2u), subgroupBroadcast(pbLo[2], 2u), subgroupBroadcast(pbLo[3], 2u)), mat4x4f(subgroupBroadcast(pbHi[0], 2u), subgroupBroadcast(pbHi[1], 2u), subgroupBroadcast(pbHi[2], 2u), subgroupBroadcast(pbHi[3], 2u)), mat4x4f(subgroupBroadcast(dbLo[0], 2u), subgroupBroadcast(dbLo[1], 2u), subgroupBroadcast(dbLo[2], 2u), subgroupBroadcast(dbLo[3], 2u)), mat4x4f(subgroupBroadcast(dbHi[0], 2u), subgroupBroadcast(dbHi[1], 2u), subgroupBroadcast(dbHi[2], 2u), subgroupBroadcast(dbHi[3], 2u)), o0, q0, o1, q1);
      }
      if (t0 + 12u < rowSpan.y && t0 + 16u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 12u, last, out0);
        let q0 = qBlock(rowBase + t0 + 12u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 12u, last, out1); q1 = qBlock(rowBase + t0 + 12u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 3u), subgroupBroadcast(paLo[1], 3u), subgroupBroadcast(paLo[2], 3u), subgroupBroadcast(paLo[3], 3u)), mat4x4f(subgroupBroadcast(paHi[0], 3u), subgroupBroadcast(paHi[1], 3u), subgroupBroadcast(paHi[2], 3u), subgroupBroadcast(paHi[3], 3u)), mat4x4f(subgroupBroadcast(daLo[0], 3u), subgroupBroadcast(daLo[1], 3u), subgroupBroadcast(daLo[2], 3u), subgroupBroadcast(daLo[3], 3u)), mat4x4f(subgroupBroadcast(daHi[0], 3u), subgroupBroadcast(daHi[1], 3u), subgroupBroadcast(daHi[2], 3u), subgroupBroadcast(daHi[3], 3u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 3u), subgroupBroadcast(pbLo[1], 3u), subgroupBroadcast(pbLo[2], 3u), subgroupBroadcast(pbLo[3], 3u)), mat4x4f(subgroupBroadcast(pbHi[0], 3u), subgroupBroadcast(pbHi[1], 3u), subgroupBroadcast(pbHi[2], 3u), subgroupBroadcast(pbHi[3], 3u)), mat4x4f(subgroupBroadcast(dbLo[0], 3u), subgroupBroadcast(dbLo[1], 3u), subgroupBroadcast(dbLo[2], 3u), subgroupBroadcast(dbLo[3], 3u)), mat4x4f(subgroupBroadcast(dbHi[0], 3u), subgroupBroadcast(dbHi[1], 3u), subgroupBroadcast(dbHi[2], 3u), subgroupBroadcast(dbHi[3], 3u)), o0, q0, o1, q1);
      }
      if (t0 + 16u < rowSpan.y && t0 + 20u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 16u, last, out0);
        let q0 = qBlock(rowBase + t0 + 16u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 16u, last, out1); q1 = qBlock(rowBase + t0 + 16u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 4u), subgroupBroadcast(paLo[1], 4u), subgroupBroadcast(paLo[2], 4u), subgroupBroadcast(paLo[3], 4u)), mat4x4f(subgroupBroadcast(paHi[0], 4u), subgroupBroadcast(paHi[1], 4u), subgroupBroadcast(paHi[2], 4u), subgroupBroadcast(paHi[3], 4u)), mat4x4f(subgroupBroadcast(daLo[0], 4u), subgroupBroadcast(daLo[1], 4u), subgroupBroadcast(daLo[2], 4u), subgroupBroadcast(daLo[3], 4u)), mat4x4f(subgroupBroadcast(daHi[0], 4u), subgroupBroadcast(daHi[1], 4u), subgroupBroadcast(daHi[2], 4u), subgroupBroadcast(daHi[3], 4u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 4u), subgroupBroadcast(pbLo[1], 4u), subgroupBroadcast(pbLo[2], 4u), subgroupBroadcast(pbLo[3], 4u)), mat4x4f(subgroupBroadcast(pbHi[0], 4u), subgroupBroadcast(pbHi[1], 4u), subgroupBroadcast(pbHi[2], 4u), subgroupBroadcast(pbHi[3], 4u)), mat4x4f(subgroupBroadcast(dbLo[0], 4u), subgroupBroadcast(dbLo[1], 4u), subgroupBroadcast(dbLo[2], 4u), subgroupBroadcast(dbLo[3], 4u)), mat4x4f(subgroupBroadcast(dbHi[0], 4u), subgroupBroadcast(dbHi[1], 4u), subgroupBroadcast(dbHi[2], 4u), subgroupBroadcast(dbHi[3], 4u)), o0, q0, o1, q1);
      }
      if (t0 + 20u < rowSpan.y && t0 + 24u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 20u, last, out0);
        let q0 = qBlock(rowBase + t0 + 20u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 20u, last, out1); q1 = qBlock(rowBase + t0 + 20u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 5u), subgroupBroadcast(paLo[1], 5u), subgroupBroadcast(paLo[2], 5u), subgroupBroadcast(paLo[3], 5u)), mat4x4f(subgroupBroadcast(paHi[0], 5u), subgroupBroadcast(paHi[1], 5u), subgroupBroadcast(paHi[2], 5u), subgroupBroadcast(paHi[3], 5u)), mat4x4f(subgroupBroadcast(daLo[0], 5u), subgroupBroadcast(daLo[1], 5u), subgroupBroadcast(daLo[2], 5u), subgroupBroadcast(daLo[3], 5u)), mat4x4f(subgroupBroadcast(daHi[0], 5u), subgroupBroadcast(daHi[1], 5u), subgroupBroadcast(daHi[2], 5u), subgroupBroadcast(daHi[3], 5u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 5u), subgroupBroadcast(pbLo[1], 5u), subgroupBroadcast(pbLo[2], 5u), subgroupBroadcast(pbLo[3], 5u)), mat4x4f(subgroupBroadcast(pbHi[0], 5u), subgroupBroadcast(pbHi[1], 5u), subgroupBroadcast(pbHi[2], 5u), subgroupBroadcast(pbHi[3], 5u)), mat4x4f(subgroupBroadcast(dbLo[0], 5u), subgroupBroadcast(dbLo[1], 5u), subgroupBroadcast(dbLo[2], 5u), subgroupBroadcast(dbLo[3], 5u)), mat4x4f(subgroupBroadcast(dbHi[0], 5u), subgroupBroadcast(dbHi[1], 5u), subgroupBroadcast(dbHi[2], 5u), subgroupBroadcast(dbHi[3], 5u)), o0, q0, o1, q1);
      }
      if (t0 + 24u < rowSpan.y && t0 + 28u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 24u, last, out0);
        let q0 = qBlock(rowBase + t0 + 24u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 24u, last, out1); q1 = qBlock(rowBase + t0 + 24u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 6u), subgroupBroadcast(paLo[1], 6u), subgroupBroadcast(paLo[2], 6u), subgroupBroadcast(paLo[3], 6u)), mat4x4f(subgroupBroadcast(paHi[0], 6u), subgroupBroadcast(paHi[1], 6u), subgroupBroadcast(paHi[2], 6u), subgroupBroadcast(paHi[3], 6u)), mat4x4f(subgroupBroadcast(daLo[0], 6u), subgroupBroadcast(daLo[1], 6u), subgroupBroadcast(daLo[2], 6u), subgroupBroadcast(daLo[3], 6u)), mat4x4f(subgroupBroadcast(daHi[0], 6u), subgroupBroadcast(daHi[1], 6u), subgroupBroadcast(daHi[2], 6u), subgroupBroadcast(daHi[3], 6u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 6u), subgroupBroadcast(pbLo[1], 6u), subgroupBroadcast(pbLo[2], 6u), subgroupBroadcast(pbLo[3], 6u)), mat4x4f(subgroupBroadcast(pbHi[0], 6u), subgroupBroadcast(pbHi[1], 6u), subgroupBroadcast(pbHi[2], 6u), subgroupBroadcast(pbHi[3], 6u)), mat4x4f(subgroupBroadcast(dbLo[0], 6u), subgroupBroadcast(dbLo[1], 6u), subgroupBroadcast(dbLo[2], 6u), subgroupBroadcast(dbLo[3], 6u)), mat4x4f(subgroupBroadcast(dbHi[0], 6u), subgroupBroadcast(dbHi[1], 6u), subgroupBroadcast(dbHi[2], 6u), subgroupBroadcast(dbHi[3], 6u)), o0, q0, o1, q1);
      }
      if (t0 + 28u < rowSpan.y && t0 + 32u > rowSpan.x) {
        let o0 = doBlock(rowBase + t0 + 28u, last, out0);
        let q0 = qBlock(rowBase + t0 + 28u, last, out0);
        var o1 = mat4x4f(); var q1 = mat4x4f();
        if (SLOTS > 1u) { o1 = doBlock(rowBase + t0 + 28u, last, out1); q1 = qBlock(rowBase + t0 + 28u, last, out1); }
        accumulate(&accA, mat4x4f(subgroupBroadcast(paLo[0], 7u), subgroupBroadcast(paLo[1], 7u), subgroupBroadcast(paLo[2], 7u), subgroupBroadcast(paLo[3], 7u)), mat4x4f(subgroupBroadcast(paHi[0], 7u), subgroupBroadcast(paHi[1], 7u), subgroupBroadcast(paHi[2], 7u), subgroupBroadcast(paHi[3], 7u)), mat4x4f(subgroupBroadcast(daLo[0], 7u), subgroupBroadcast(daLo[1], 7u), subgroupBroadcast(daLo[2], 7u), subgroupBroadcast(daLo[3], 7u)), mat4x4f(subgroupBroadcast(daHi[0], 7u), subgroupBroadcast(daHi[1], 7u), subgroupBroadcast(daHi[2], 7u), subgroupBroadcast(daHi[3], 7u)), o0, q0, o1, q1);
        accumulate(&accB, mat4x4f(subgroupBroadcast(pbLo[0], 7u), subgroupBroadcast(pbLo[1], 7u), subgroupBroadcast(pbLo[2], 7u), subgroupBroadcast(pbLo[3], 7u)), mat4x4f(subgroupBroadcast(pbHi[0], 7u), subgroupBroadcast(pbHi[1], 7u), subgroupBroadcast(pbHi[2], 7u), subgroupBroadcast(pbHi[3], 7u)), mat4x4f(subgroupBroadcast(dbLo[0], 7u), subgroupBroadcast(dbLo[1], 7u), subgroupBroadcast(dbLo[2], 7u), subgroupBroadcast(dbLo[3], 7u)), mat4x4f(subgroupBroadcast(dbHi[0], 7u), subgroupBroadcast(dbHi[1], 7u), subgroupBroadcast(dbHi[2], 7u), subgroupBroadcast(dbHi[3], 7u)), o0, q0, o1, q1);
      }
    }
  }
  storeKeys(accA.kLo0, accA.vLo0, 0u, nKeys, keyBase * DQ, lane);
  storeKeys(accA.kHi0, accA.vHi0, 4u, nKeys, keyBase * DQ, lane);
  storeKeys(accB.kLo0, accB.vLo0, 8u, nKeys, keyBase * DQ, lane);
  storeKeys(accB.kHi0, accB.vHi0, 12u, nKeys, keyBase * DQ, lane);
  if (SLOTS > 1u) {
    storeKeys(accA.kLo1, accA.vLo1, 0u, nKeys, keyBase * DQ, lane + 8u);
    storeKeys(accA.kHi1, accA.vHi1, 4u, nKeys, keyBase * DQ, lane + 8u);
    storeKeys(accB.kLo1, accB.vLo1, 8u, nKeys, keyBase * DQ, lane + 8u);
    storeKeys(accB.kHi1, accB.vHi1, 12u, nKeys, keyBase * DQ, lane + 8u);
  }
}
