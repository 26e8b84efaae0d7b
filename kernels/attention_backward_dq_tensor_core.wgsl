// Attention backward, dQ of one (query tile of BR rows, query head h, batch row b), on the tensor cores. The
// forward was out = P V per query row, P = exp(S·scale - lse) on visible entries and 0 elsewhere, S = Q Kᵀ; so
//   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dQ = scale · dS K,
// as kernels/attention_backward_dq.wgsl (the f32 reference: same bindings, params, mask and tile skipping), with
// the three products on subgroup matrices: f16 operands, f32 accumulators. q [B, H, T, D], k and v [B, KVH, S, D]
// hold f16, two per u32 word (the even element in the low half); dout is f32, rounded to f16 when staged; D is even.
//
// attention_backward_tensor_core.ts adds the tensor-core directives and includes the mask rule and
// attention_backward_tensor_core_tiles.wgsl (matrix types, constants, inputs, tiles, staging, the S and dP
// products). Subgroup sg = lid / SG accumulates dQ of query rows sg·TM .. sg·TM + TM - 1 (BR = NSG·TM), over key
// tiles of BC keys.
//
// Per key tile: stage Kᵀ and Vᵀ [DP][BC] (every matrix load is row-major, as in the forward); S = Q Kᵀ into fTile;
// each lane keeps P of its share in registers; dP = dO Vᵀ into fTile; dS = P (dP - delta) to dsTile in f16; K
// [BC][DP] replaces Kᵀ; dQ += dS K in each subgroup's accumulators. At the end each accumulator goes through fTile
// to dq. Every subgroup-matrix call follows a workgroupBarrier in loops whose trip counts are constants or
// workgroup-uniform, so whole subgroups execute them.

@group(0) @binding(7) var<storage, read_write> dq: array<f32>; // [B, H, T, D]
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let rows = min(BR, params.T - t0);
  let rowBase = (b * params.H + h) * params.T + t0;
  let kvBase = (b * params.KVH + h / (params.H / params.KVH)) * params.S * D;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos0 = t0 + params.positionOffset;
  let span = visibleKeySpan(pos0, pos0 + rows - 1u, keys, params.causal, params.window);

  stageQueryRows(rowBase, rows, lid); // attention_backward_tensor_core_tiles.wgsl

  let sg = lid / SG;
  var acc = array<Acc, DP / TN>(); // dQ of this subgroup's rows, dims n·TN.. at acc[n]
  var p: array<f32, SHARE>; // P of this lane's score entries lid + i·WG

  for (var j0 = span.x - span.x % BC; j0 < span.y; j0 += BC) {
    workgroupBarrier(); // Q and dO are stored; the previous key tile's readers of kTile and dsTile are done
    stageKeysTransposed(kvBase, j0, lid);
    workgroupBarrier();
    scoreBlocks(sg, false); // S = Q Kᵀ
    workgroupBarrier();
    recomputeP(&p, pos0, rows, j0, keys, lid);
    workgroupBarrier();
    scoreBlocks(sg, true); // dP = dO Vᵀ
    // K [BC][DP] replaces Kᵀ, whose readers (S) are behind the barrier above.
    for (var w = lid; w < BC * DP / 2u; w += WG) {
      let key = w / (DP / 2u);
      let d = 2u * (w % (DP / 2u));
      var kx = vec2f(0.0);
      if (j0 + key < params.S && d < D) { kx = unpack2x16float(k[(kvBase + (j0 + key) * D + d) / 2u]); }
      kTile[key * ROW_STRIDE + d] = f16(kx.x);
      kTile[key * ROW_STRIDE + d + 1u] = f16(kx.y);
    }
    workgroupBarrier();
    for (var i = 0u; i < SHARE; i++) {
      let e = lid + i * WG;
      let r = e / BC;
      let c = e % BC;
      dsTile[r * DS_STRIDE + c] = f16(p[i] * (fTile[r * S_STRIDE + c] - deltaTile[r]));
    }
    workgroupBarrier();
    // dQ += dS K for this subgroup's TM rows, TN dims at a time, summed over the keys TK at a time.
    for (var n = 0u; n < DP / TN; n++) {
      for (var kc = 0u; kc < BC; kc += TK) {
        let a = subgroupMatrixLoad<Left, row_major>(&dsTile, sg * TM * DS_STRIDE + kc, DS_STRIDE);
        let kb = subgroupMatrixLoad<Right, row_major>(&kTile, kc * ROW_STRIDE + n * TN, ROW_STRIDE);
        acc[n] = subgroupMatrixMultiplyAccumulate(a, kb, acc[n]);
      }
    }
  }

  // Each subgroup's TM×TN block of dims n·TN.. through fTile, then every lane writes its share of all of them.
  for (var n = 0u; n < DP / TN; n++) {
    workgroupBarrier(); // the previous readers of fTile are done
    subgroupMatrixStore<row_major>(&fTile, sg * TM * OUT_STRIDE, acc[n], OUT_STRIDE);
    workgroupBarrier();
    for (var e = lid; e < BR * TN; e += WG) {
      let r = e / TN;
      let d = n * TN + e % TN;
      if (r < rows && d < D) { dq[(rowBase + r) * D + d] = fTile[r * OUT_STRIDE + e % TN] * params.scale; }
    }
  }
}
