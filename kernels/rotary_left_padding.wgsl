// The optional leftPadding input of rotary (binding 2, i32 [B]: batch row b's padding columns), for the variant
// with it; the variant without it includes rotary_no_left_padding.wgsl instead, which declares no binding.
@group(0) @binding(2) var<storage, read> leftPadding: array<i32>;

// Position pos of a row of batch row row / rowsPerBatch, counted from that batch row's first real token.
// Padding tokens (pos < 0 here) are seen by no query: 0 keeps their angles in the exact range.
fn paddedPosition(pos: i32, row: u32) -> i32 { return max(pos - leftPadding[row / params.rowsPerBatch], 0); }
