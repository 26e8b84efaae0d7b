// The variant of an attention kernel without padding: the keyRange binding is left out (see
// attention_key_range.wgsl) and every batch row sees all S keys.
fn keyRangeOf(b: u32, S: u32) -> vec2u { return vec2u(0u, S); }
