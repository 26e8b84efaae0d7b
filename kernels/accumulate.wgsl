// acc[i] += x[i]: gradient accumulation into a parameter's .grad.

struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(i: u32) { acc[i] = acc[i] + x[i]; }
