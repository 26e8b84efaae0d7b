// The optional activation of the matmul kernels' stores (activation_math.wgsl, whose FN selects it, comes first):
// C = f(op(A)·op(B) + bias) + residual, e.g. an MLP's GELU where no gradient needs the pre-activation (generation,
// reference passes): one pass over C instead of a second kernel. The variant without one includes
// no_activation.wgsl instead.
fn activate(v: f32) -> f32 { return activation(v); }
