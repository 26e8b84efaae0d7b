// Copies between a dense tensor and a strided view of another (up to 4 dims): permutes and slices.
// GATHER = 1: dense[i] = src[offset + idx(i)·strides]; GATHER = 0: dst[offset + idx(i)·strides] = dense[i].
override GATHER: u32 = 1u;
override WG: u32 = 256u;

struct Params {
  n: u32, // elements of the dense side
  d1: u32, d2: u32, d3: u32, // dense dims 1..3
  s0: u32, s1: u32, s2: u32, s3: u32, // strides of the strided side, in the dense side's dim order
  offset: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let i3 = i % params.d3;
  let i2 = (i / params.d3) % params.d2;
  let i1 = (i / (params.d3 * params.d2)) % params.d1;
  let i0 = i / (params.d3 * params.d2 * params.d1);
  let j = params.offset + i0 * params.s0 + i1 * params.s1 + i2 * params.s2 + i3 * params.s3;
  if (GATHER == 1u) { y[i] = x[j]; } else { y[j] = x[i]; }
}
