// Where element i of qkv_rotary.wgsl and of its backward (qkv_rotary_backward.wgsl) lies, so that the two are each
// other's transpose: one element per (token row, head of q, k, then v, lane), `lanes` = D - half as in rotary.wgsl (a
// pair, or one passed-through dim). Token row r = b·T + t of the projections holds q head h at r·qRowStride +
// h·headStride, k head h at kOffset + r·kvRowStride + h·headStride, v head h at vOffset + r·kvRowStride + h·headStride;
// the heads lie in q [B, H, T, D] and k, v [B, KVH, kvLength, D] at position positionOffset + t. The including kernel
// declares `params` of these Params at its uniform binding and headElement(s), which computes the element at slot s.
// Each invocation takes params.perThread elements WG apart, as elementwise_main.wgsl's threads do: it divides its first
// index into (b, t, head, lane) once and adds WG's to reach the next (lavapipe has no vector integer divide).
override WG: u32 = 256u;

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

// The index of an element: its token row's batch row b and position t, its head (q's, then k's, then v's) and lane.
struct QkvIndex { b: u32, t: u32, head: u32, lane: u32 }

fn headsPerToken() -> u32 { return params.heads + 2u * params.kvHeads; }

fn qkvIndex(i: u32) -> QkvIndex {
  let slot = i / params.lanes;
  let token = slot / headsPerToken();
  return QkvIndex(token / params.seqLen, token % params.seqLen, slot % headsPerToken(), i % params.lanes);
}

// The index of element i + j from those of elements i and j: a sum in mixed radix, each digit carrying at most one.
fn addedQkvIndex(ix: QkvIndex, by: QkvIndex) -> QkvIndex {
  var sum = QkvIndex(ix.b + by.b, ix.t + by.t, ix.head + by.head, ix.lane + by.lane);
  if (sum.lane >= params.lanes) { sum.lane -= params.lanes; sum.head++; }
  if (sum.head >= headsPerToken()) { sum.head -= headsPerToken(); sum.t++; }
  if (sum.t >= params.seqLen) { sum.t -= params.seqLen; sum.b++; }
  return sum;
}

fn qkvSlot(ix: QkvIndex) -> QkvSlot {
  let token = ix.b * params.seqLen + ix.t;
  var s: QkvSlot;
  s.lane = ix.lane;
  s.paired = s.lane < params.half;
  s.d1 = select(s.lane + params.half, s.lane, s.paired);
  s.d2 = s.lane + params.half;
  s.pos = paddedPosition(i32(ix.t + params.positionOffset), ix.b); // rotary_left_padding.wgsl or rotary_no_left_padding.wgsl
  if (ix.head < params.heads) {
    s.projection = token * params.qRowStride + ix.head * params.headStride;
    s.heads = ((ix.b * params.heads + ix.head) * params.seqLen + ix.t) * params.headDim;
    return s;
  }
  let isK = ix.head < params.heads + params.kvHeads;
  let h = ix.head - params.heads - select(params.kvHeads, 0u, isK);
  s.part = select(2u, 1u, isK);
  s.projection = select(params.vOffset, params.kOffset, isK) + token * params.kvRowStride + h * params.headStride;
  s.heads = ((ix.b * params.kvHeads + h) * params.kvLength + params.positionOffset + ix.t) * params.headDim;
  return s;
}

// (x1, x2) rotated by pair `lane`'s angle at pos (by minus it when `inverse`: the backward, the rotation being
// orthogonal) when paired; else as they are (a dim past the rotated ones, or v).
fn rotated(x: vec2f, s: QkvSlot, inverse: bool) -> vec2f {
  if (!s.paired || s.part == 2u) { return x; }
  let sc = sinCos(rotaryAngle(s.pos, s.lane)); // rotary_rotation.wgsl
  return rotatePair(x.x, x.y, vec2f(select(sc.x, -sc.x, inverse), sc.y));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = (wid.x + wid.y * nwg.x) * WG * params.perThread + lid;
  if (first >= params.n) { return; }
  var ix = qkvIndex(first);
  let stride = qkvIndex(WG);
  for (var k = 0u; k < params.perThread; k++) {
    if (first + k * WG >= params.n) { return; }
    headElement(qkvSlot(ix));
    ix = addedQkvIndex(ix, stride);
  }
}
