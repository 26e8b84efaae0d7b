// Generation's attention inputs in one pass, from the q, k, v projections of T new tokens (one packed or concatenated
// tensor bound three times, or three tensors): q [B, H, T, D] rotated, k rotated and v as it is, both written into
// k, v [B, KVH, kvLength, D] at positions positionOffset .. positionOffset + T - 1 (a KV cache; or the prompt's own
// keys, kvLength = T at offset 0). The rotation is rotary.wgsl's (rotary_rotation.wgsl): the first 2·half dims of
// each q and k head rotate in pairs (i, i + half) by f32(pos) · invFreq[i], pos = t + positionOffset less the row's
// left padding; the other dims, and v, pass through. The values are split, the head permutes, rotary and the cache's
// copies composed, bit for bit.
// Token row r = b·T + t of the sources holds q head h at r·qRowStride + h·headStride, k head h at
// kOffset + r·kvRowStride + h·headStride, v head h at vOffset + r·kvRowStride + h·headStride.
// One thread per (token row, head of q, k, then v, lane), `lanes` = D - half as in rotary.wgsl: a pair, or one
// passed-through dim.
override WG: u32 = 256u;

struct Params {
  n: u32, lanes: u32, headDim: u32, half: u32, seqLen: u32, positionOffset: u32, heads: u32, kvHeads: u32, kvLength: u32,
  qRowStride: u32, kvRowStride: u32, headStride: u32, kOffset: u32, vOffset: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
// binding 4: leftPadding [B] i32, declared by rotary_left_padding.wgsl (the variant without padding leaves it out)
@group(0) @binding(5) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> kOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> vOut: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// (x1, x2) rotated by pair `lane`'s angle at pos when paired; else as they are (a dim past the rotated ones).
fn rotated(x1: f32, x2: f32, paired: bool, pos: i32, lane: u32) -> vec2f {
  if (!paired) { return vec2f(x1, x2); }
  return rotatePair(x1, x2, sinCos(rotaryAngle(pos, lane))); // rotary_rotation.wgsl
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let headsPerToken = params.heads + 2u * params.kvHeads;
  let slot = i / params.lanes;
  let lane = i % params.lanes;
  let token = slot / headsPerToken;
  let head = slot % headsPerToken;
  let b = token / params.seqLen;
  let t = token % params.seqLen;
  // lane < half: the pair (lane, lane + half); from half on, dim lane + half alone (d1 = d2).
  let paired = lane < params.half;
  let d1 = select(lane + params.half, lane, paired);
  let d2 = lane + params.half;
  let pos = paddedPosition(i32(t + params.positionOffset), b); // rotary_left_padding.wgsl or rotary_no_left_padding.wgsl
  if (head < params.heads) {
    let src = token * params.qRowStride + head * params.headStride;
    let dst = ((b * params.heads + head) * params.seqLen + t) * params.headDim;
    let y = rotated(q[src + d1], q[src + d2], paired, pos, lane);
    qOut[dst + d1] = y.x;
    if (paired) { qOut[dst + d2] = y.y; }
    return;
  }
  let h = (head - params.heads) % params.kvHeads;
  let dst = ((b * params.kvHeads + h) * params.kvLength + params.positionOffset + t) * params.headDim;
  if (head < params.heads + params.kvHeads) {
    let src = params.kOffset + token * params.kvRowStride + h * params.headStride;
    let y = rotated(k[src + d1], k[src + d2], paired, pos, lane);
    kOut[dst + d1] = y.x;
    if (paired) { kOut[dst + d2] = y.y; }
    return;
  }
  let src = params.vOffset + token * params.kvRowStride + h * params.headStride;
  vOut[dst + d1] = v[src + d1];
  if (paired) { vOut[dst + d2] = v[src + d2]; }
}
