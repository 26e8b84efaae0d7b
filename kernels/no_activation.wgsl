// The variant of the matmul kernels without an activation (see matmul_activation.wgsl).
fn activate(v: f32) -> f32 { return v; }
