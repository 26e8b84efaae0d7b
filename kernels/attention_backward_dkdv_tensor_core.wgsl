// Attention backward, dK and dV of one (key tile of BC keys, kv head, batch row b), on the tensor cores. The
// forward was out = P V per query row, P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dK = scale · dSᵀ Q,
// as kernels/attention_backward_dkdv.wgsl (the f32 reference: same bindings, params, mask, tile skipping and the
// loop over the H / KVH query heads of the kv head, no atomics), with the four products on subgroup matrices: f16
// operands, f32 accumulators. q [B, H, T, D], k and v [B, KVH, S, D] hold f16, two per u32 word; dout is f32,
// rounded to f16 when staged; D is even.
//
// attention_backward_tensor_core.ts adds the tensor-core directives and includes the mask rule and
// attention_backward_tensor_core_tiles.wgsl (matrix types, constants, inputs, tiles, staging, the S and dP
// products). Subgroup sg = lid / SG accumulates dK and dV of keys sg·TM .. sg·TM + TM - 1 (BC = NSG·TM), over
// query tiles of BR rows.
//
// Kᵀ and Vᵀ [DP][BC] are staged once. Per query tile: stage Q and dO [BR][DP]; S = Q Kᵀ into fTile; each lane
// keeps P of its share in registers and writes Pᵀ to pTile in f16; dP = dO Vᵀ into fTile; dSᵀ = (P (dP - delta))ᵀ
// to dsTile in f16; dV += Pᵀ dO and dK += dSᵀ Q in each subgroup's accumulators (Q and dO [BR][DP] are the
// right operands as staged: every matrix load is row-major). At the end each accumulator goes through fTile to dk
// and dv. Every subgroup-matrix call follows a workgroupBarrier in loops whose trip counts are constants or
// workgroup-uniform, so whole subgroups execute them.

@group(0) @binding(7) var<storage, read_write> dk: array<f32>; // [B, KVH, S, D]
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
@group(0) @binding(9) var<uniform> params: Params;

var<workgroup> pTile: array<f16, DS_SIZE>; // Pᵀ [BC][BR], stride DS_STRIDE

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j0 = wid.x * BC;
  let kvh = wid.y;
  let b = wid.z;
  let nKeys = min(BC, params.S - j0);
  let kvBase = (b * params.KVH + kvh) * params.S * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  var rowSpan = seeingRowSpan(j0, j0 + nKeys - 1u, params.T, params.positionOffset, params.causal, params.window);
  if (keys.y <= j0 || keys.x >= j0 + nKeys) { rowSpan = vec2u(0u, 0u); } // padding hides the whole tile

  stageKeysTransposed(kvBase, j0, lid); // attention_backward_tensor_core_tiles.wgsl
  let sg = lid / SG;
  var dkAcc = array<Acc, DP / TN>(); // dSᵀ Q of this subgroup's keys, dims n·TN.. at dkAcc[n]
  var dvAcc = array<Acc, DP / TN>(); // Pᵀ dO likewise
  var p: array<f32, SHARE>; // P of this lane's score entries lid + i·WG

  let G = params.H / params.KVH;
  for (var g = 0u; g < G; g++) {
    let rowBase = (b * params.H + kvh * G + g) * params.T;
    for (var t0 = rowSpan.x - rowSpan.x % BR; t0 < rowSpan.y; t0 += BR) {
      let rows = min(BR, params.T - t0);
      workgroupBarrier(); // the previous query tile's readers of qTile, doTile, pTile and dsTile are done
      stageQueryRows(rowBase + t0, rows, lid);
      workgroupBarrier();
      scoreBlocks(sg, false); // S = Q Kᵀ
      workgroupBarrier();
      recomputeP(&p, t0 + params.positionOffset, rows, j0, keys, lid);
      for (var i = 0u; i < SHARE; i++) {
        let e = lid + i * WG;
        pTile[(e % BC) * DS_STRIDE + e / BC] = f16(p[i]);
      }
      workgroupBarrier();
      scoreBlocks(sg, true); // dP = dO Vᵀ
      workgroupBarrier();
      for (var i = 0u; i < SHARE; i++) {
        let e = lid + i * WG;
        let r = e / BC;
        let c = e % BC;
        dsTile[c * DS_STRIDE + r] = f16(p[i] * (fTile[r * S_STRIDE + c] - deltaTile[r]));
      }
      workgroupBarrier();
      // dV += Pᵀ dO and dK += dSᵀ Q for this subgroup's TM keys, TN dims at a time, summed over the rows TK at a time.
      for (var n = 0u; n < DP / TN; n++) {
        for (var kr = 0u; kr < BR; kr += TK) {
          let pt = subgroupMatrixLoad<Left, row_major>(&pTile, sg * TM * DS_STRIDE + kr, DS_STRIDE);
          let dor = subgroupMatrixLoad<Right, row_major>(&doTile, kr * ROW_STRIDE + n * TN, ROW_STRIDE);
          dvAcc[n] = subgroupMatrixMultiplyAccumulate(pt, dor, dvAcc[n]);
          let dst = subgroupMatrixLoad<Left, row_major>(&dsTile, sg * TM * DS_STRIDE + kr, DS_STRIDE);
          let qr = subgroupMatrixLoad<Right, row_major>(&qTile, kr * ROW_STRIDE + n * TN, ROW_STRIDE);
          dkAcc[n] = subgroupMatrixMultiplyAccumulate(dst, qr, dkAcc[n]);
        }
      }
    }
  }

  // Each subgroup's TM×TN blocks of dims n·TN.. of dK and dV through fTile (dV after BC rows), then every lane
  // writes its share of all of them.
  let keyBase = kvBase + j0 * D;
  for (var n = 0u; n < DP / TN; n++) {
    workgroupBarrier(); // the previous readers of fTile are done
    subgroupMatrixStore<row_major>(&fTile, sg * TM * OUT_STRIDE, dkAcc[n], OUT_STRIDE);
    subgroupMatrixStore<row_major>(&fTile, (BC + sg * TM) * OUT_STRIDE, dvAcc[n], OUT_STRIDE);
    workgroupBarrier();
    for (var e = lid; e < BC * TN; e += WG) {
      let c = e / TN;
      let d = n * TN + e % TN;
      if (c < nKeys && d < D) {
        dk[keyBase + c * D + d] = fTile[c * OUT_STRIDE + e % TN] * params.scale;
        dv[keyBase + c * D + d] = fTile[(BC + c) * OUT_STRIDE + e % TN];
      }
    }
  }
}
