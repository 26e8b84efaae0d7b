// out = f(gate) · up elementwise (SwiGLU when f is SiLU); f = activation() from activation_math.wgsl.
struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> gate: array<Value>;
@group(0) @binding(1) var<storage, read> up: array<Value>;
@group(0) @binding(2) var<storage, read_write> out: array<Value>;
@group(0) @binding(3) var<uniform> params: Params;

fn element(i: u32) { out[i] = activationOf(gate[i]) * up[i]; }
