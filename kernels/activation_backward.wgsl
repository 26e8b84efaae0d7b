// Backward of activation.wgsl: forward was out = f(x), so dx = dy · f'(x).
struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> x: array<Value>;
@group(0) @binding(1) var<storage, read> dy: array<Value>;
@group(0) @binding(2) var<storage, read_write> dx: array<Value>;
@group(0) @binding(3) var<uniform> params: Params;

fn element(i: u32) { dx[i] = dy[i] * derivativeOf(x[i]); }
