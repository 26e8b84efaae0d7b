// out[t, c] = weight[ids[t], c]: one thread per output element. Ids outside [0, vocab) read nothing and give 0.
// The table is stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit word, the even element in the low
// half, e.g. a frozen model's table); out is f32.
override WG: u32 = 256u;
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16

struct Params { n: u32, cols: u32, vocab: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn loadWeight(i: u32) -> f32 { return widen(weight[wordOf(i, WEIGHT_FORMAT)], i, WEIGHT_FORMAT); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let id = ids[i / params.cols];
  var v = 0.0;
  if (id >= 0 && u32(id) < params.vocab) { v = loadWeight(u32(id) * params.cols + i % params.cols); }
  out[i] = v;
}
