// qkv_rotary_backward.wgsl's gradients of three projection tensors, q, k and v (Llama, Mistral).
@group(0) @binding(5) var<storage, read_write> dq: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;

fn storeProjection(part: u32, e: u32, value: f32) {
  if (part == 0u) { dq[e] = value; } else if (part == 1u) { dk[e] = value; } else { dv[e] = value; }
}
