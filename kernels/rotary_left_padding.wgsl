// The optional leftPadding input of rotary and qkvRotary (i32 [B]: batch row b's padding columns; the binding is
// the input's index), for the variant with it; the variant without it includes rotary_no_left_padding.wgsl
// instead, which declares no binding.
@group(0) @binding({{LEFT_PADDING_BINDING}}) var<storage, read> leftPadding: array<i32>;

// Position pos of a token of batch row b, counted from that batch row's first real token.
// Padding tokens (pos < 0 here) are seen by no query: 0 keeps their angles in the exact range.
fn paddedPosition(pos: i32, b: u32) -> i32 { return max(pos - leftPadding[b], 0); }
