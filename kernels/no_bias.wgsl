// The variant of matmul and matmulSmallM without a bias: binding 2 is left out (see bias.wgsl).
fn addBias(v: f32, n: u32) -> f32 { return v; }
