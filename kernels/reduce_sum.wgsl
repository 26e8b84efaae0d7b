// out = alpha * x summed over the dims where out has size 1 and x does not (x up to 4 dims, contiguous).
// One thread per output element: the backward of broadcasting, and sum/mean over a dim.

struct Params {
  n: u32, // output elements
  perThread: u32,
  d0: u32, d1: u32, d2: u32, d3: u32, // input dims
  o1: u32, o2: u32, o3: u32, // output dims 1..3 (each 1 or equal to the input's)
  r0: u32, r1: u32, r2: u32, r3: u32, // extent summed along each dim (1 where kept)
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(j: u32) {
  let c3 = j % params.o3;
  let c2 = (j / params.o3) % params.o2;
  let c1 = (j / (params.o3 * params.o2)) % params.o1;
  let c0 = j / (params.o3 * params.o2 * params.o1);
  let s2 = params.d3;
  let s1 = params.d2 * s2;
  let s0 = params.d1 * s1;
  var acc = 0.0;
  for (var a = 0u; a < params.r0; a++) {
    for (var b = 0u; b < params.r1; b++) {
      for (var c = 0u; c < params.r2; c++) {
        let row = (c0 + a) * s0 + (c1 + b) * s1 + (c2 + c) * s2 + c3;
        for (var d = 0u; d < params.r3; d++) { acc += x[row + d]; }
      }
    }
  }
  out[j] = params.alpha * acc;
}
