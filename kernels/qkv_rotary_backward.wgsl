// The backward of qkv_rotary.wgsl: the projections' gradient from the gradients of q [B, H, T, D] and of k, v
// [B, KVH, kvLength, D] (at positions positionOffset .. positionOffset + T - 1), each thread the transpose of the
// forward's (qkv_rotary_layout.wgsl): q's and k's pairs rotated back by minus their angle, as rotary.wgsl's INVERSE
// does, the rest passed through. Every element of the projections is written once, so nothing needs zeroing first.
// Where the gradient goes, one tensor (packed or concatenated projections) or three: storeProjection, from
// qkv_rotary_backward_one.wgsl or qkv_rotary_backward_three.wgsl.

@group(0) @binding(0) var<storage, read> dqOut: array<f32>;
@group(0) @binding(1) var<storage, read> dkOut: array<f32>;
@group(0) @binding(2) var<storage, read> dvOut: array<f32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
// binding 4: leftPadding [B] i32, declared by rotary_left_padding.wgsl (the variant without padding leaves it out)
// bindings 5 to 7: the projections' gradient, declared by the storeProjection include
@group(0) @binding(8) var<uniform> params: Params; // qkv_rotary_layout.wgsl

// The heads' gradient elements e1, e2 of part `part`.
fn headPair(part: u32, e1: u32, e2: u32) -> vec2f {
  if (part == 0u) { return vec2f(dqOut[e1], dqOut[e2]); }
  if (part == 1u) { return vec2f(dkOut[e1], dkOut[e2]); }
  return vec2f(dvOut[e1], dvOut[e2]);
}

fn headElement(s: QkvSlot) {
  let dx = rotated(headPair(s.part, s.heads + s.d1, s.heads + s.d2), s, true);
  storeProjection(s.part, s.projection + s.d1, dx.x);
  if (s.paired) { storeProjection(s.part, s.projection + s.d2, dx.y); }
}
