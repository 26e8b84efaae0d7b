// out[t, c] = weight[ids[t], c]: one thread per output element. Ids outside [0, vocab) read nothing and give 0.
// The table is stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit word, the even element in the low
// half, e.g. a frozen model's table); out is f32.
override WG: u32 = 256u;
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16

const F32 = 0u;
const F16 = 1u;
const BF16 = 2u;

struct Params { n: u32, cols: u32, vocab: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// Element i of an operand stored in `format`, given the word that holds it (as in matmul.wgsl). The format is an
// override constant, so the compiler keeps only one branch.
fn widen(word: u32, i: u32, format: u32) -> f32 {
  if (format == F16) { return unpack2x16float(word)[i & 1u]; }
  if (format == BF16) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u)); } // bf16 is a truncated f32
  return bitcast<f32>(word);
}

fn wordOf(i: u32, format: u32) -> u32 { return select(i / 2u, i, format == F32); }

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
