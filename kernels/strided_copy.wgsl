// Copies between a dense tensor and a strided view of another (up to 4 dims): permutes and slices.
// GATHER = 1: dense[i] = src[offset + idx(i)·strides]; GATHER = 0: dst[offset + idx(i)·strides] = dense[i].
// Each invocation copies params.perThread consecutive dense elements: it divides its first index into the four
// indices once and steps the strided index from there (lavapipe has no vector integer divide; on a GPU, perThread 1).
// VALUE: f32, or vec4f where the innermost dim runs contiguous on both sides in whole quads (dims, strides and offset
// then count quads).
override GATHER: u32 = 1u;
override WG: u32 = 256u;

struct Params {
  n: u32, // elements of the dense side
  perThread: u32,
  d1: u32, d2: u32, d3: u32, // dense dims 1..3
  s0: u32, s1: u32, s2: u32, s3: u32, // strides of the strided side, in the dense side's dim order
  offset: u32,
}

@group(0) @binding(0) var<storage, read> x: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{VALUE}}>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = (gid.x + gid.y * nwg.x * WG) * params.perThread;
  if (first >= params.n) { return; }
  let d1 = params.d1;
  let d2 = params.d2;
  let d3 = params.d3;
  var i3 = first % d3;
  var i2 = (first / d3) % d2;
  var i1 = (first / (d3 * d2)) % d1;
  let i0 = first / (d3 * d2 * d1);
  // u32 arithmetic wraps, so the steps back to a dim's start may pass below 0 on the way to the right index.
  var j = params.offset + i0 * params.s0 + i1 * params.s1 + i2 * params.s2 + i3 * params.s3;
  for (var i = first; i < min(params.n, first + params.perThread); i++) {
    if (GATHER == 1u) { y[i] = x[j]; } else { y[j] = x[i]; }
    i3++;
    j += params.s3;
    if (i3 == d3) {
      i3 = 0u;
      i2++;
      j += params.s2 - d3 * params.s3;
      if (i2 == d2) {
        i2 = 0u;
        i1++;
        j += params.s1 - d2 * params.s2;
        if (i1 == d1) {
          i1 = 0u;
          j += params.s0 - d1 * params.s1;
        }
      }
    }
  }
}
