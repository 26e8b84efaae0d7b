// What the two tensor-core backward kernels share (attention_backward_dq_tensor_core.wgsl,
// attention_backward_dkdv_tensor_core.wgsl): the matrix types and constants filled in by
// attention_backward_tensor_core.ts, the inputs, the tiles, their staging and the S and dP products. BR query rows
// by BC keys per tile pair; DP = D rounded up to the matrix shape (dims D..DP-1 are zero in the tiles); the S and
// dP blocks (TM×TN) of a tile pair are shared out BLOCKS_PER_SG to a subgroup; each lane keeps SHARE score
// entries (lid + i·WG of the BR×BC tile) in the scalar phases; *_STRIDE the padded row strides (16-byte aligned
// rows, as Vulkan's cooperative-matrix loads need), *_SIZE the tiles' lengths.

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
const ROW_STRIDE = {{ROW_STRIDE}}u;
const KT_STRIDE = {{KT_STRIDE}}u;
const S_STRIDE = {{S_STRIDE}}u;
const OUT_STRIDE = {{OUT_STRIDE}}u;
const DS_STRIDE = {{DS_STRIDE}}u;
const Q_SIZE = {{Q_SIZE}}u;
const KT_SIZE = {{KT_SIZE}}u;
const F_SIZE = {{F_SIZE}}u;
const DS_SIZE = {{DS_SIZE}}u;
const BLOCKS_PER_SG = {{BLOCKS_PER_SG}}u;
const SHARE = {{SHARE}}u;

@group(0) @binding(0) var<storage, read> q: array<u32>; // [B, H, T, D] f16 pairs (the even element in the low half)
@group(0) @binding(1) var<storage, read> k: array<u32>; // [B, KVH, S, D] f16 pairs
@group(0) @binding(2) var<storage, read> v: array<u32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>; // [B, H, T, D], rounded to f16 when staged
@group(0) @binding(4) var<storage, read> lse: array<f32>; // [B, H, T]
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, T]
// binding 6: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)

var<workgroup> qTile: array<f16, Q_SIZE>; // [BR][DP], stride ROW_STRIDE
var<workgroup> doTile: array<f16, Q_SIZE>; // [BR][DP], stride ROW_STRIDE
var<workgroup> kTile: array<f16, KT_SIZE>; // Kᵀ [DP][BC], stride KT_STRIDE (the dQ kernel then holds K [BC][DP] there)
var<workgroup> vTile: array<f16, KT_SIZE>; // Vᵀ [DP][BC], stride KT_STRIDE
var<workgroup> fTile: array<f32, F_SIZE>; // S, then dP [BR][BC] (stride S_STRIDE); at the end gradient blocks (OUT_STRIDE)
var<workgroup> dsTile: array<f16, DS_SIZE>; // dS: [BR][BC] (dQ kernel) or dSᵀ [BC][BR] (dK/dV kernel), stride DS_STRIDE
var<workgroup> lseTile: array<f32, BR>;
var<workgroup> deltaTile: array<f32, BR>;

// Q and dO rows [row0, row0 + rows) of one head (row0 counts rows of all heads), with their lse and delta; one
// word (two dims) per step, zero beyond the valid rows and beyond D.
fn stageQueryRows(row0: u32, rows: u32, lid: u32) {
  for (var w = lid; w < BR * DP / 2u; w += WG) {
    let r = w / (DP / 2u);
    let d = 2u * (w % (DP / 2u));
    var qx = vec2f(0.0);
    var dox = vec2f(0.0);
    if (r < rows && d < D) {
      let e = (row0 + r) * D + d; // even, since D is: a row starts on a word
      qx = unpack2x16float(q[e / 2u]);
      dox = vec2f(dout[e], dout[e + 1u]);
    }
    qTile[r * ROW_STRIDE + d] = f16(qx.x);
    qTile[r * ROW_STRIDE + d + 1u] = f16(qx.y);
    doTile[r * ROW_STRIDE + d] = f16(dox.x);
    doTile[r * ROW_STRIDE + d + 1u] = f16(dox.y);
  }
  for (var r = lid; r < BR; r += WG) {
    var l = 0.0;
    var dl = 0.0;
    if (r < rows) { l = lse[row0 + r]; dl = delta[row0 + r]; }
    lseTile[r] = l;
    deltaTile[r] = dl;
  }
}

// Kᵀ and Vᵀ [DP][BC] of keys [j0, j0 + BC) of the kv head at element kvBase; zero beyond S and D. Neighbouring
// lanes take neighbouring keys, so that their f16 stores share words.
fn stageKeysTransposed(kvBase: u32, j0: u32, lid: u32) {
  for (var w = lid; w < BC * DP / 2u; w += WG) {
    let key = w % BC;
    let d = 2u * (w / BC);
    var kx = vec2f(0.0);
    var vx = vec2f(0.0);
    if (j0 + key < params.S && d < D) {
      let e = (kvBase + (j0 + key) * D + d) / 2u;
      kx = unpack2x16float(k[e]);
      vx = unpack2x16float(v[e]);
    }
    kTile[d * KT_STRIDE + key] = f16(kx.x);
    kTile[(d + 1u) * KT_STRIDE + key] = f16(kx.y);
    vTile[d * KT_STRIDE + key] = f16(vx.x);
    vTile[(d + 1u) * KT_STRIDE + key] = f16(vx.y);
  }
}

// S = Q Kᵀ (or dP = dO Vᵀ when fromDo) of the BR×BC tile pair into fTile, summed over the DP dims TK at a time:
// this subgroup's blocks sg + i·NSG. Whole subgroups run it: sg is uniform in a subgroup and the trip counts constant.
fn scoreBlocks(sg: u32, fromDo: bool) {
  for (var i = 0u; i < BLOCKS_PER_SG; i++) {
    let blk = sg + i * NSG;
    let m = (blk / (BC / TN)) * TM;
    let n = (blk % (BC / TN)) * TN;
    var acc = Acc();
    for (var kk = 0u; kk < DP; kk += TK) {
      if (fromDo) {
        let a = subgroupMatrixLoad<Left, row_major>(&doTile, m * ROW_STRIDE + kk, ROW_STRIDE);
        let b = subgroupMatrixLoad<Right, row_major>(&vTile, kk * KT_STRIDE + n, KT_STRIDE);
        acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
      } else {
        let a = subgroupMatrixLoad<Left, row_major>(&qTile, m * ROW_STRIDE + kk, ROW_STRIDE);
        let b = subgroupMatrixLoad<Right, row_major>(&kTile, kk * KT_STRIDE + n, KT_STRIDE);
        acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
      }
    }
    subgroupMatrixStore<row_major>(&fTile, m * S_STRIDE + n, acc, S_STRIDE);
  }
}

// P of this lane's share of the tile pair (query rows t0.., positions from pos0, keys j0..), from S in fTile and
// the saved lse; 0 where masked or beyond the valid rows.
fn recomputeP(p: ptr<function, array<f32, SHARE>>, pos0: u32, rows: u32, j0: u32, keys: vec2u, lid: u32) {
  for (var i = 0u; i < SHARE; i++) {
    let e = lid + i * WG;
    let r = e / BC;
    let c = e % BC;
    let visible = r < rows && keyVisible(pos0 + r, j0 + c, keys, params.causal, params.window);
    (*p)[i] = select(0.0, exp(fTile[r * S_STRIDE + c] * params.scale - lseTile[r]), visible);
  }
}
