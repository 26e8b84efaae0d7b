// The variant of rotary without padding: binding 2 is left out (see rotary_left_padding.wgsl).
fn paddedPosition(pos: i32, row: u32) -> i32 { return pos; }
