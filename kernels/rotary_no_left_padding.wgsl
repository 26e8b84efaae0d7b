// The variant of rotary and qkvRotary without padding: the leftPadding binding is left out (see rotary_left_padding.wgsl).
fn paddedPosition(pos: i32, b: u32) -> i32 { return pos; }
