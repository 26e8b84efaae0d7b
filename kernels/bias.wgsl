// The optional bias input of matmul and matmulSmallM (binding 2), for the variant with a bias; the variant
// without one includes no_bias.wgsl instead, which declares no binding.
@group(0) @binding(2) var<storage, read> bias: array<f32>;

fn addBias(v: f32, n: u32) -> f32 { return v + bias[n]; }
