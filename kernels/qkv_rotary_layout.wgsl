// Where thread i of qkv_rotary.wgsl and of its backward (qkv_rotary_backward.wgsl) works, so that the two are each
// other's transpose: one thread per (token row, head of q, k, then v, lane), `lanes` = D - half as in rotary.wgsl (a
// pair, or one passed-through dim). Token row r = b·T + t of the projections holds q head h at r·qRowStride +
// h·headStride, k head h at kOffset + r·kvRowStride + h·headStride, v head h at vOffset + r·kvRowStride + h·headStride;
// the heads lie in q [B, H, T, D] and k, v [B, KVH, kvLength, D] at position positionOffset + t. The including kernel
// declares `params` of these Params at its uniform binding.
struct Params {
  n: u32, perThread: u32, lanes: u32, headDim: u32, half: u32, seqLen: u32, positionOffset: u32, heads: u32, kvHeads: u32, kvLength: u32,
  qRowStride: u32, kvRowStride: u32, headStride: u32, kOffset: u32, vOffset: u32,
}

struct QkvSlot {
  part: u32, // 0 q, 1 k, 2 v
  projection: u32, // the head's first element in the projections
  heads: u32, // its first element in q, or in k or v
  pos: i32, // the rotation's position: t + positionOffset, less the row's left padding
  lane: u32,
  paired: bool, // lane < half: dims (d1, d2) = (lane, lane + half) rotate together; else dim d1 = d2 = lane + half alone
  d1: u32,
  d2: u32,
}

fn qkvSlot(i: u32) -> QkvSlot {
  let headsPerToken = params.heads + 2u * params.kvHeads;
  let slot = i / params.lanes;
  let token = slot / headsPerToken;
  let head = slot % headsPerToken;
  let b = token / params.seqLen;
  let t = token % params.seqLen;
  var s: QkvSlot;
  s.lane = i % params.lanes;
  s.paired = s.lane < params.half;
  s.d1 = select(s.lane + params.half, s.lane, s.paired);
  s.d2 = s.lane + params.half;
  s.pos = paddedPosition(i32(t + params.positionOffset), b); // rotary_left_padding.wgsl or rotary_no_left_padding.wgsl
  if (head < params.heads) {
    s.projection = token * params.qRowStride + head * params.headStride;
    s.heads = ((b * params.heads + head) * params.seqLen + t) * params.headDim;
    return s;
  }
  let h = (head - params.heads) % params.kvHeads;
  s.part = select(2u, 1u, head < params.heads + params.kvHeads);
  s.projection = select(params.vOffset, params.kOffset, s.part == 1u) + token * params.kvRowStride + h * params.headStride;
  s.heads = ((b * params.kvHeads + h) * params.kvLength + params.positionOffset + t) * params.headDim;
  return s;
}

// (x1, x2) rotated by pair `lane`'s angle at pos (by minus it when `inverse`: the backward, the rotation being
// orthogonal) when paired; else as they are (a dim past the rotated ones, or v).
fn rotated(x: vec2f, s: QkvSlot, inverse: bool) -> vec2f {
  if (!s.paired || s.part == 2u) { return x; }
  let sc = sinCos(rotaryAngle(s.pos, s.lane)); // rotary_rotation.wgsl
  return rotatePair(x.x, x.y, vec2f(select(sc.x, -sc.x, inverse), sc.y));
}
