// y[i] = x[i] · keep(i) · scale, keep(i) = hash(i, stream, counter, seed) >= threshold: inverted dropout whose
// mask is a pure function of (seed, counter, stream, element index), so the backward recomputes it (dy → dx
// is the same kernel on the gradient) and a run resumes from a (seed, counter) pair with no RNG state.
// The hash is PCG4D (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering"): the four words are mixed
// jointly, and the top 24 bits of the first one are the uniform draw: P(keep) = 1 - threshold / 2^24.

struct Params { n: u32, perThread: u32, seed: u32, counter: u32, stream: u32, threshold: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn pcg4d(input: vec4u) -> vec4u {
  var v = input * 1664525u + 1013904223u;
  v.x += v.y * v.w; v.y += v.z * v.x; v.z += v.x * v.y; v.w += v.y * v.z;
  v ^= v >> vec4u(16u);
  v.x += v.y * v.w; v.y += v.z * v.x; v.z += v.x * v.y; v.w += v.y * v.z;
  return v;
}

fn element(i: u32) {
  let draw = pcg4d(vec4u(i, params.stream, params.counter, params.seed)).x >> 8u;
  y[i] = select(0.0, x[i] * params.scale, draw >= params.threshold);
}
