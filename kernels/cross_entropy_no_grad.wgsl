// The variant of crossEntropy without the gradient pass: bindings 2 (count) and 3 (dlogits) are left out (see
// cross_entropy_grad.wgsl).
fn writeGradient(base: u32, V: u32, lid: u32, rowMax: f32, rowSum: f32, t: i32, ignored: bool) {}
