// FlashAttention-2 forward on the tensor cores, for one (query tile of BR rows, query head h, batch row b):
//   out = softmax(Q Kᵀ·scale + mask) V,   lse = ln Σ_visible exp(score)   (scores scaled and masked)
// as kernels/attention_forward.wgsl (the f32 reference: same bindings, params, mask, tile skipping, out and lse,
// lse = -inf and out = 0 for a row that sees no key), with the two products on subgroup matrices: f16 operands,
// f32 accumulators. q [B, H, T, D], k and v [B, KVH, S, D] hold f16, two per u32 word (the even element in the
// low half); D is even.
//
// attention_forward_tensor_core.ts adds the directives `enable f16; enable chromium_experimental_subgroup_matrix;`
// and `diagnostic(off, chromium.subgroup_matrix_uniformity);` (offsets derive from lid / SG), includes the mask
// rule, and fills in the placeholders of the matrix types Left (TM×TK), Right (TK×TN), Acc (TM×TN, f32) and of
// these constants:
//   SG lanes per subgroup (fixed on this device), NSG subgroups, WG = SG·NSG threads; subgroup sg = lid / SG
//   owns query rows sg·TM .. sg·TM + TM - 1 of the BR = NSG·TM rows; BC keys per tile; DP = D rounded up to the
//   matrix shape (dims D..DP-1 are zero in the tiles); LPR = WG / BR lanes per row in the scalar phases;
//   *_STRIDE the row strides of the tiles (padded: fewer bank conflicts, 16-byte aligned rows), *_SIZE their
//   lengths. The K tile is stored transposed, Kᵀ [DP][BC], so that every matrix load is row-major: on an H200
//   that beat reading K [BC][DP] col_major (2.82 vs 3.03 ms at B4 H16 T2048 D64).
//
// Per key tile: stage K (f16); S = Q Kᵀ per subgroup into fTile (f32); per row, scale, mask and the online
// softmax in f32 (max and sum over LPR lanes through partialMax and partialSum); P = exp(S - m) to pTile as f16;
// V replaces K; P V per subgroup into fTile; each lane folds its row's share of P V into its registers
// o = o·exp(m_old - m_new) + P V. The running max m and sum l of a row live in the registers of its LPR lanes,
// which compute the same values. Every subgroup-matrix call follows a workgroupBarrier in loops whose trip counts
// are constants or workgroup-uniform, so whole subgroups execute them.

alias Left = subgroup_matrix_left<f16, {{TK}}, {{TM}}>;
alias Right = subgroup_matrix_right<f16, {{TN}}, {{TK}}>;
alias Acc = subgroup_matrix_result<f32, {{TN}}, {{TM}}>;
const SG = {{SG}}u;
const NSG = {{NSG}}u;
const WG = {{WG}}u;
const TM = {{TM}}u;
const TN = {{TN}}u;
const TK = {{TK}}u;
const BR = {{BR}}u;
const BC = {{BC}}u;
const D = {{D}}u;
const DP = {{DP}}u;
const LPR = {{LPR}}u;
const Q_STRIDE = {{Q_STRIDE}}u;
const K_STRIDE = {{K_STRIDE}}u;
const V_STRIDE = {{V_STRIDE}}u;
const P_STRIDE = {{P_STRIDE}}u;
const S_STRIDE = {{S_STRIDE}}u;
const O_STRIDE = {{O_STRIDE}}u;
const Q_SIZE = {{Q_SIZE}}u;
const KV_SIZE = {{KV_SIZE}}u;
const P_SIZE = {{P_SIZE}}u;
const F_SIZE = {{F_SIZE}}u;

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> k: array<u32>;
@group(0) @binding(2) var<storage, read> v: array<u32>;
// binding 3: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// Bound as bits so that -inf can be written without infinite arithmetic.
@group(0) @binding(5) var<storage, read_write> lse: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> qTile: array<f16, Q_SIZE>; // [BR][DP], stride Q_STRIDE
var<workgroup> kvTile: array<f16, KV_SIZE>; // K of the key tile ([DP][BC] or [BC][DP], stride K_STRIDE), then V [BC][DP] (stride V_STRIDE)
var<workgroup> pTile: array<f16, P_SIZE>; // [BR][BC], stride P_STRIDE: exp(score - m)
var<workgroup> fTile: array<f32, F_SIZE>; // scores [BR][BC] (stride S_STRIDE), then P V [BR][DP] (stride O_STRIDE)
var<workgroup> partialMax: array<f32, WG>; // per lane: the max of its share of its row's scores
var<workgroup> partialSum: array<f32, WG>; // per lane: the sum of its share of its row's exp(score - m)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let rows = min(BR, params.T - t0);
  // Element indices; even, since D is: a row starts on a word.
  let qBase = ((b * params.H + h) * params.T + t0) * D;
  let kvBase = (b * params.KVH + h / (params.H / params.KVH)) * params.S * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);

  // The Q tile, one word (two dims) per step; zero beyond the valid rows and beyond D.
  for (var w = lid; w < BR * DP / 2u; w += WG) {
    let r = w / (DP / 2u);
    let d = 2u * (w % (DP / 2u));
    var x = vec2f(0.0);
    if (r < rows && d < D) { x = unpack2x16float(q[(qBase + r * D + d) / 2u]); }
    qTile[r * Q_STRIDE + d] = f16(x.x);
    qTile[r * Q_STRIDE + d + 1u] = f16(x.y);
  }

  let sg = lid / SG;
  let row = lid / LPR; // this lane's row in the scalar phases; its share: keys and dims part + i·LPR
  let part = lid % LPR;
  let rowValid = row < rows;
  var m = NO_SCORE; // running max of the row's scaled visible scores
  var l = 0.0; // running Σ exp(score - m)
  var o = array<f32, DP / LPR>(); // unnormalised output, dims part + j·LPR

  for (var j0 = span.x - span.x % BC; j0 < span.y; j0 += BC) {
    workgroupBarrier(); // the Q tile is stored; the previous key tile's readers of kvTile and fTile are done
    for (var w = lid; w < BC * DP / 2u; w += WG) {
      // Kᵀ [DP][BC]: neighbouring lanes take neighbouring keys, so that their f16 stores share words.
      let key = w % BC;
      let d = 2u * (w / BC);
      var x = vec2f(0.0);
      if (j0 + key < params.S && d < D) { x = unpack2x16float(k[(kvBase + (j0 + key) * D + d) / 2u]); }
      kvTile[d * K_STRIDE + key] = f16(x.x);
      kvTile[(d + 1u) * K_STRIDE + key] = f16(x.y);
    }
    workgroupBarrier();
    // S = Q Kᵀ for this subgroup's TM rows, TN keys at a time, summed over the dims TK at a time.
    for (var n = 0u; n < BC; n += TN) {
      var acc = Acc();
      for (var kk = 0u; kk < DP; kk += TK) {
        let a = subgroupMatrixLoad<Left, row_major>(&qTile, sg * TM * Q_STRIDE + kk, Q_STRIDE);
        let kT = subgroupMatrixLoad<Right, row_major>(&kvTile, kk * K_STRIDE + n, K_STRIDE); // Kᵀ dims kk.., keys n..
        acc = subgroupMatrixMultiplyAccumulate(a, kT, acc);
      }
      subgroupMatrixStore<row_major>(&fTile, sg * TM * S_STRIDE + n, acc, S_STRIDE);
    }
    workgroupBarrier();
    // Scale and mask this lane's share of its row (kept in fTile for the exponentials), and its max.
    var shareMax = NO_SCORE;
    for (var i = 0u; i < BC / LPR; i++) {
      let c = part + i * LPR;
      let visible = rowValid && keyVisible(pos0 + row, j0 + c, keys, params.causal, params.window);
      let score = select(NO_SCORE, fTile[row * S_STRIDE + c] * params.scale, visible);
      fTile[row * S_STRIDE + c] = score;
      shareMax = max(shareMax, score);
    }
    partialMax[lid] = shareMax;
    // V replaces K: the products that read K are behind the barrier above.
    for (var w = lid; w < BC * DP / 2u; w += WG) {
      let key = w / (DP / 2u);
      let d = 2u * (w % (DP / 2u));
      var x = vec2f(0.0);
      if (j0 + key < params.S && d < D) { x = unpack2x16float(v[(kvBase + (j0 + key) * D + d) / 2u]); }
      kvTile[key * V_STRIDE + d] = f16(x.x);
      kvTile[key * V_STRIDE + d + 1u] = f16(x.y);
    }
    workgroupBarrier();
    var mNew = m;
    for (var i = 0u; i < LPR; i++) { mNew = max(mNew, partialMax[row * LPR + i]); }
    var shareSum = 0.0;
    for (var i = 0u; i < BC / LPR; i++) {
      let c = part + i * LPR;
      let score = fTile[row * S_STRIDE + c];
      let p = select(0.0, exp(score - mNew), score != NO_SCORE);
      pTile[row * P_STRIDE + c] = f16(p);
      shareSum += p;
    }
    partialSum[lid] = shareSum;
    // 1 while the row has seen no key (both maxima NO_SCORE), 0 when it sees its first.
    let rescale = exp(m - mNew);
    m = mNew;
    workgroupBarrier();
    var tileSum = 0.0;
    for (var i = 0u; i < LPR; i++) { tileSum += partialSum[row * LPR + i]; }
    l = l * rescale + tileSum;
    // P V for this subgroup's TM rows, TN dims at a time, summed over the keys TK at a time; the scores in fTile
    // were all read before the barrier above.
    for (var n = 0u; n < DP; n += TN) {
      var acc = Acc();
      for (var kc = 0u; kc < BC; kc += TK) {
        let a = subgroupMatrixLoad<Left, row_major>(&pTile, sg * TM * P_STRIDE + kc, P_STRIDE);
        let bv = subgroupMatrixLoad<Right, row_major>(&kvTile, kc * V_STRIDE + n, V_STRIDE);
        acc = subgroupMatrixMultiplyAccumulate(a, bv, acc);
      }
      subgroupMatrixStore<row_major>(&fTile, sg * TM * O_STRIDE + n, acc, O_STRIDE);
    }
    workgroupBarrier();
    for (var j = 0u; j < DP / LPR; j++) { o[j] = fma(o[j], rescale, fTile[row * O_STRIDE + part + j * LPR]); }
  }

  if (rowValid) {
    for (var j = 0u; j < DP / LPR; j++) {
      let d = part + j * LPR;
      if (d < D) { out[qBase + row * D + d] = select(0.0, o[j] / l, l > 0.0); }
    }
    if (part == 0u) {
      lse[(b * params.H + h) * params.T + t0 + row] = select(NEG_INF_BITS, bitcast<u32>(m + log(l)), l > 0.0);
    }
  }
}
