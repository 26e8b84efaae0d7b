// acc[i] += x[i]: gradient accumulation into a parameter's .grad. VALUE is f32, or vec4f where the count is a
// multiple of 4.

struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> x: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read_write> acc: array<{{VALUE}}>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(i: u32) { acc[i] = acc[i] + x[i]; }
