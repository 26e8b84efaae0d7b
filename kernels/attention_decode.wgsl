// Attention decode, split over keys (generation: a few query rows against a long KV cache). For one query row
// (token t of head h, batch row b) and one chunk of CHUNK cache keys, the chunk's softmax statistics and
// unnormalised output over its visible keys j:
//   m = max_j s_j,   l = Σ_j exp(s_j - m),   o = Σ_j exp(s_j - m) v_j,   s_j = q · k_j · scale,
// which attention_decode_reduce.wgsl merges across chunks; with one chunk (a short cache) the kernel writes the
// row's output itself, o / l (0 for a row that sees no key), and there is nothing to merge. Keys [0, filled) of the cache hold data; the mask
// is the forward's (always causal). q [B, H, T, D], k and v [B, KVH, S, D] hold `Storage` (f32 or f16: the
// spec fills in the placeholder).
alias Storage = {{STORAGE}};

override D: u32;
override CHUNK: u32;
override WG: u32; // a power of two

const NO_SCORE = -1.0e30; // below any real score and finite

struct Params {
  T: u32, S: u32, filled: u32, H: u32, KVH: u32, chunks: u32,
  scale: f32,
  causal: u32, window: u32, positionOffset: u32,
}

@group(0) @binding(0) var<storage, read> q: array<Storage>;
@group(0) @binding(1) var<storage, read> k: array<Storage>;
@group(0) @binding(2) var<storage, read> v: array<Storage>;
// binding 3: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(4) var<storage, read_write> partialOut: array<f32>; // [B·H·T, chunks, D]
@group(0) @binding(5) var<storage, read_write> partialStats: array<f32>; // [B·H·T, chunks, 2]: m, l
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> qRow: array<f32, D>;
var<workgroup> scores: array<f32, CHUNK>; // exp(s - m) of the chunk's keys
var<workgroup> reduction: array<f32, WG>;

// The max (or the sum) of x over the workgroup; called in uniform control flow.
fn workgroupReduce(x: f32, lid: u32, takeMax: bool) -> f32 {
  reduction[lid] = x;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let y = reduction[lid + stride];
      reduction[lid] = select(reduction[lid] + y, max(reduction[lid], y), takeMax);
    }
    workgroupBarrier();
  }
  let result = reduction[0];
  workgroupBarrier(); // everyone has read it before the next reduction writes
  return result;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let h = wid.y / params.T;
  let t = wid.y % params.T;
  let b = wid.z;
  let row = (b * params.H + h) * params.T + t;
  let at = decodeKeys(b, h, t, chunk); // attention_decode_keys.wgsl
  let kvBase = at.kvRow * D;
  let keys = at.keys;
  let pos = at.pos;
  let chunk0 = chunk * CHUNK;
  let j0 = at.j0;
  let j1 = at.j1;

  for (var d = lid; d < D; d += WG) { qRow[d] = f32(q[row * D + d]); }
  workgroupBarrier();
  var m = NO_SCORE;
  for (var j = j0 + lid; j < j1; j += WG) {
    var s = 0.0;
    for (var d = 0u; d < D; d++) { s = fma(qRow[d], f32(k[kvBase + j * D + d]), s); }
    s *= params.scale;
    scores[j - chunk0] = s;
    if (keyVisible(pos, j, keys, params.causal, params.window)) { m = max(m, s); }
  }
  m = workgroupReduce(m, lid, true);
  var l = 0.0;
  for (var j = j0 + lid; j < j1; j += WG) {
    var p = 0.0;
    if (keyVisible(pos, j, keys, params.causal, params.window)) { p = exp(scores[j - chunk0] - m); }
    scores[j - chunk0] = p;
    l += p;
  }
  l = workgroupReduce(l, lid, false); // its barriers also publish scores
  let slot = row * params.chunks + chunk;
  for (var d = lid; d < D; d += WG) {
    var o = 0.0;
    for (var j = j0; j < j1; j++) { o = fma(scores[j - chunk0], f32(v[kvBase + j * D + d]), o); }
    if (params.chunks == 1u) { o = select(0.0, o / l, l > 0.0); }
    partialOut[slot * D + d] = o;
  }
  if (lid == 0u) {
    partialStats[2u * slot] = m;
    partialStats[2u * slot + 1u] = l;
  }
}
