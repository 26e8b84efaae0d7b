// The activation kernels' element as one f32 (activation_quad.wgsl: four of them a vec4f).
alias Value = f32;

fn activationOf(x: Value) -> Value { return activation(x); }
fn derivativeOf(x: Value) -> Value { return activationDerivative(x); }
