// Attention decode on a thread a query row and key chunk (a CPU driver's variant of attention_decode.wgsl, with its
// outputs and its arithmetic but no barrier): the chunk's visible keys j, in order,
//   m = max_j s_j,   p_j = exp(s_j - m),   l = Σ_j p_j (added in key order),   o_d = Σ_j p_j v_jd,
// with s_j = q · k_j · scale; attention_decode_reduce.wgsl merges the chunks, and with one chunk the thread writes
// o / l itself (0 for a row that sees no key). Keys [0, filled) of the cache hold data; the mask is the forward's
// (always causal). q [B, H, T, D], k and v [B, KVH, S, D] hold `Storage` (f32 or f16: the spec fills in the
// placeholder). The scores live in the thread's own slice of workgroup memory, so no thread waits for another.
alias Storage = {{STORAGE}};

override D: u32;
override CHUNK: u32;
override WG: u32;

const NO_SCORE = -1.0e30; // below any real score and finite

struct Params {
  T: u32, S: u32, filled: u32, H: u32, KVH: u32, chunks: u32, B: u32,
  scale: f32,
  causal: u32, window: u32, positionOffset: u32,
}

// Quads of dims (D a multiple of 4): lavapipe loads a quad for the cost of one element.
@group(0) @binding(0) var<storage, read> q: array<vec4<Storage>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<Storage>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<Storage>>;
// binding 3: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
@group(0) @binding(4) var<storage, read_write> partialOut: array<vec4f>; // [B·H·T, chunks, D] in quads
@group(0) @binding(5) var<storage, read_write> partialStats: array<f32>; // [B·H·T, chunks, 2]: m, l
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> scores: array<f32, WG * CHUNK>; // thread lid's: [lid * CHUNK, (lid + 1) * CHUNK)

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let slot = gid.x + gid.y * nwg.x * WG; // row * chunks + chunk
  if (slot >= params.B * params.H * params.T * params.chunks) { return; }
  let row = slot / params.chunks;
  let chunk = slot % params.chunks;
  let t = row % params.T;
  let h = (row / params.T) % params.H;
  let b = row / (params.T * params.H);
  let quads = D / 4u;
  let at = decodeKeys(b, h, t, chunk); // attention_decode_keys.wgsl: its keys [j0, j1) are all visible
  let kvBase = at.kvRow * quads;
  let j0 = at.j0;
  let j1 = at.j1;
  let own = lid * CHUNK - chunk * CHUNK; // scores[own + j]: key j's

  var m = NO_SCORE;
  for (var j = j0; j < j1; j++) {
    var s = 0.0;
    for (var c = 0u; c < quads; c++) {
      let qc = vec4f(q[row * quads + c]);
      let kc = vec4f(k[kvBase + j * quads + c]);
      s = fma(qc.w, kc.w, fma(qc.z, kc.z, fma(qc.y, kc.y, fma(qc.x, kc.x, s))));
    }
    s *= params.scale;
    scores[own + j] = s;
    m = max(m, s);
  }
  var l = 0.0;
  for (var j = j0; j < j1; j++) {
    let p = exp(scores[own + j] - m);
    scores[own + j] = p;
    l += p;
  }
  for (var c = 0u; c < quads; c++) {
    var o = vec4f(0.0);
    for (var j = j0; j < j1; j++) { o = fma(vec4f(scores[own + j]), vec4f(v[kvBase + j * quads + c]), o); }
    if (params.chunks == 1u) { o = select(vec4f(0.0), o / l, l > 0.0); }
    partialOut[slot * quads + c] = o;
  }
  partialStats[2u * slot] = m;
  partialStats[2u * slot + 1u] = l;
}
