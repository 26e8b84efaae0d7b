// The optional residual input of the matmul kernels (binding 3), for the variant that adds one: C = op(A)·op(B)
// (+ bias) + residual, residual of C's shape (a transformer's x + proj(h), added as C is stored rather than by a
// separate pass over C); the variant without one includes no_residual.wgsl instead, which declares no binding.
@group(0) @binding(3) var<storage, read> residual: array<f32>;

fn addResidual(v: f32, i: u32) -> f32 { return v + residual[i]; }
