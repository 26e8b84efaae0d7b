// The single layerNorm: no second output (see layernorm_second_output.wgsl).
fn writeSecond(i: u32, j: u32, xhat: f32) {}
