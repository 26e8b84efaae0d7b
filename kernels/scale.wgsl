// out = alpha · x elementwise (alpha = 1: a copy), element i with no index arithmetic. VALUE is f32, or vec4f where
// the count is a multiple of 4.

struct Params { n: u32, perThread: u32, alpha: f32 } // n VALUEs

@group(0) @binding(0) var<storage, read> x: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{VALUE}}>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(i: u32) { out[i] = params.alpha * x[i]; }
