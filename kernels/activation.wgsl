// out = f(x) elementwise; f = activation() from activation_math.wgsl, chosen by FN.
struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> x: array<Value>;
@group(0) @binding(1) var<storage, read_write> out: array<Value>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(i: u32) { out[i] = activationOf(x[i]); }
