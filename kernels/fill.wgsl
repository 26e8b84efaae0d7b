// out[i] = value.

struct Params { n: u32, perThread: u32, value: f32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

fn element(i: u32) { out[i] = params.value; }
