// Generation's attention inputs in one pass, from the q, k, v projections of T new tokens (one packed or concatenated
// tensor bound three times, or three tensors): q [B, H, T, D] rotated, k rotated and v as it is, both written into
// k, v [B, KVH, kvLength, D] at positions positionOffset .. positionOffset + T - 1 (a KV cache; or the prompt's own
// keys, kvLength = T at offset 0). The rotation is rotary.wgsl's (rotary_rotation.wgsl): the first 2·half dims of
// each q and k head rotate in pairs (i, i + half) by f32(pos) · invFreq[i], pos = t + positionOffset less the row's
// left padding; the other dims, and v, pass through. The values are split, the head permutes, rotary and the cache's
// copies composed, bit for bit. Which thread reads and writes where: qkv_rotary_layout.wgsl.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
// binding 4: leftPadding [B] i32, declared by rotary_left_padding.wgsl (the variant without padding leaves it out)
@group(0) @binding(5) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> kOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> vOut: array<f32>;
@group(0) @binding(8) var<uniform> params: Params; // qkv_rotary_layout.wgsl

// The projections' elements e1, e2 of part `part`.
fn projectionPair(part: u32, e1: u32, e2: u32) -> vec2f {
  if (part == 0u) { return vec2f(q[e1], q[e2]); }
  if (part == 1u) { return vec2f(k[e1], k[e2]); }
  return vec2f(v[e1], v[e2]);
}

fn storeHead(part: u32, e: u32, value: f32) {
  if (part == 0u) { qOut[e] = value; } else if (part == 1u) { kOut[e] = value; } else { vOut[e] = value; }
}

fn headElement(s: QkvSlot) {
  let y = rotated(projectionPair(s.part, s.projection + s.d1, s.projection + s.d2), s, false);
  storeHead(s.part, s.heads + s.d1, y.x);
  if (s.paired) { storeHead(s.part, s.heads + s.d2, y.y); }
}
