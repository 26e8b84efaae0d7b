// The activation kernels' element as a vec4f of four f32 (a count divisible by 4): each lane as
// activation_word.wgsl computes it, so the same bits; on a CPU driver a load or store moves four.
alias Value = vec4f;

fn activationOf(x: Value) -> Value { return vec4f(activation(x.x), activation(x.y), activation(x.z), activation(x.w)); }
fn derivativeOf(x: Value) -> Value {
  return vec4f(activationDerivative(x.x), activationDerivative(x.y), activationDerivative(x.z), activationDerivative(x.w));
}
