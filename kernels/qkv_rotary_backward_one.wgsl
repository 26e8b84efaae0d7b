// qkv_rotary_backward.wgsl's gradient of one projection tensor (packed query_key_value, or q | k | v side by side),
// which the forward bound as q, k and v alike: every part goes to dq (outputs dk and dv are left out).
@group(0) @binding(5) var<storage, read_write> dq: array<f32>;

fn storeProjection(part: u32, e: u32, value: f32) { dq[e] = value; }
