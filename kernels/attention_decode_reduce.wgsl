// Merges the key chunks of attention_decode.wgsl: with M = max_c m_c and weights w_c = exp(m_c - M),
//   out = Σ_c w_c o_c / Σ_c w_c l_c,
// 0 for a row that sees no key (every l_c = 0). One thread per output element.
override D: u32;
override WG: u32;

const NO_SCORE = -1.0e30; // the decode kernel's m of a chunk without a visible key

struct Params { rows: u32, chunks: u32 }

@group(0) @binding(0) var<storage, read> partialOut: array<f32>; // [rows, chunks, D]
@group(0) @binding(1) var<storage, read> partialStats: array<f32>; // [rows, chunks, 2]: m, l
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // [rows, D]
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows * D) { return; }
  let row = i / D;
  let d = i % D;
  var mMax = NO_SCORE;
  for (var c = 0u; c < params.chunks; c++) { mMax = max(mMax, partialStats[2u * (row * params.chunks + c)]); }
  var l = 0.0;
  var o = 0.0;
  for (var c = 0u; c < params.chunks; c++) {
    let slot = row * params.chunks + c;
    let w = exp(partialStats[2u * slot] - mMax);
    l = fma(w, partialStats[2u * slot + 1u], l);
    o = fma(w, partialOut[slot * D + d], o);
  }
  out[i] = select(0.0, o / l, l > 0.0);
}
