// The optional keyRange input of the attention kernels (i32 [B, 2], each batch row's valid keys: padding), for
// the variant with it; its binding number is the spec's (the input's index). The variant without it includes
// attention_no_key_range.wgsl instead, which declares no binding.
@group(0) @binding({{KEY_RANGE_BINDING}}) var<storage, read> keyRange: array<i32>;

// Batch row b's valid keys [start, end) from its keyRange entry, clamped to the S keys that exist.
fn keyRangeOf(b: u32, S: u32) -> vec2u {
  let lo = min(u32(max(keyRange[2u * b], 0)), S);
  return vec2u(lo, clamp(u32(max(keyRange[2u * b + 1u], 0)), lo, S));
}
