// The next token of each row of logits [rows, V], on the GPU: one workgroup per row, ids[row] = the token.
//
// Greedy (temperature 0): the first index of the largest logit (torch.argmax on ties); one pass over V.
// Sampling: transformers' warpers in its order, then one draw from the kept tokens' renormalised weights
// w_i = exp((x_i - max) / temperature):
//   top-k: kthKey = the k-th largest logit, by bisection on its order key (below): the largest key t with
//          #{i : key_i >= t} >= k. Tokens tied with the k-th stay.
//   top-p: on the top-k survivors (mass Z), cKey = the largest key t with Σ_{key_i >= t} w_i >= p·Z. Every
//          token above cKey stays; of the tokens tied at cKey the first nKeep in index order stay, nKeep the
//          fewest that bring the mass to p·Z: this is transformers' "keep a token while the mass before it
//          (most probable first, ties in index order) is below p".
//   Each bisection step is one pass over V and a tree; a bisection stops once a single logit is left in its
//   key interval, about log2(V) + a few steps for spread logits, and at most 32 (2^32 keys; exact ties).
//   draw:  u = hash(seed, step - first, rowId) in [0, 1) (rowCounters[row] = (rowId, first): the step of the row's first
//          token, so that a row joining a batch late draws what it would alone), a counter-based generator with no state; the inverse CDF of
//          u·(kept mass) in index order, over contiguous chunks of V per thread: each thread sums its chunk,
//          one thread scans the WG sums, and the chunk holding the target scans itself again.
// Every sum runs in a fixed order, so the same seed gives the same token on the same device.
// The order key maps f32 to u32 monotonically (negatives bit-flipped, positives with the sign bit set), so
// a bisection over the keys finds an exact logit value. Counts are summed as f32: V < 2^24.
override WG: u32 = 256u; // a power of two

struct Params { rows: u32, V: u32, temperature: f32, topK: u32, topP: f32, seed: u32, step: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> rowCounters: array<vec2i>;
@group(0) @binding(2) var<storage, read_write> ids: array<i32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> wgF: array<f32, WG>;
var<workgroup> wgV: array<vec2f, WG>;
var<workgroup> wgTotal: vec2f;
var<workgroup> wgU: array<u32, WG>;
var<workgroup> chosen: u32; // the thread whose chunk holds the draw
var<workgroup> chosenBase: f32; // the kept mass before that chunk
var<workgroup> drawTarget: f32;

const NONE: u32 = 0xffffffffu;

fn orderKey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn fromKey(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// lowbias32 (Chris Wellons' integer hash).
fn mix(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u; h *= 0x7feb352du;
  h ^= h >> 15u; h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}

fn uniform01(seed: u32, step: u32, row: u32) -> f32 {
  var h = mix(seed + 0x9e3779b9u);
  h = mix(h ^ (step * 0x85ebca6bu + 0xc2b2ae35u));
  h = mix(h ^ (row * 0x27d4eb2fu + 0x165667b1u));
  return f32(h >> 8u) * (1.0 / 16777216.0); // 24 bits: exact in f32, below 1
}

// (count, mass Σ w_i) of the logits whose key is >= t: a pass over the row and a tree in a fixed order; the same
// value, uniform, for every invocation.
fn atOrAbove(base: u32, t: u32, rowMax: f32, invT: f32, lid: u32) -> vec2f {
  var s = vec2f(0.0);
  for (var i = lid; i < params.V; i += WG) {
    let x = logits[base + i];
    if (orderKey(x) >= t) { s += vec2f(1.0, exp((x - rowMax) * invT)); }
  }
  wgV[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { wgV[lid] += wgV[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) { wgTotal = wgV[0]; }
  return workgroupUniformLoad(&wgTotal);
}

struct Cut { key: u32, alone: bool, above: f32 }

// The largest key t in [lo, hi] with F(t) >= wanted, F the count (byMass false) or the mass of the keys >= t;
// count(lo) = countLo and F(lo) >= wanted on entry, F(hi + 1) < wanted. Bisection that stops as soon as one
// logit is left in [lo, hi] (alone: the keys >= lo are then the answer's set), else runs to lo == hi (ties).
// above: the mass of the keys > hi, which is the mass over the answer when it ran to lo == hi.
fn bisect(base: u32, lo0: u32, hi0: u32, countLo: f32, wanted: f32, byMass: bool, rowMax: f32, invT: f32, lid: u32) -> Cut {
  var lo = lo0;
  var hi = hi0;
  var cntLo = countLo;
  var cntHi = 0.0;
  var above = 0.0;
  loop {
    if (lo >= hi || cntLo - cntHi <= 1.0) { break; }
    let mid = lo + (hi - lo + 1u) / 2u;
    let r = atOrAbove(base, mid, rowMax, invT, lid);
    if (select(r.x, r.y, byMass) >= wanted) { lo = mid; cntLo = r.x; } else { hi = mid - 1u; cntHi = r.x; above = r.y; }
  }
  return Cut(lo, lo < hi || cntLo - cntHi <= 1.0, above);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let V = params.V;
  let base = row * V;

  // The largest logit and its first index.
  var m = 0.0;
  var at = NONE;
  for (var i = lid; i < V; i += WG) {
    let x = logits[base + i];
    if (at == NONE || x > m) { m = x; at = i; }
  }
  wgF[lid] = m;
  wgU[lid] = at;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) {
      let m2 = wgF[lid + stride];
      let at2 = wgU[lid + stride];
      if (at2 != NONE && (wgU[lid] == NONE || m2 > wgF[lid] || (m2 == wgF[lid] && at2 < wgU[lid]))) { wgF[lid] = m2; wgU[lid] = at2; }
    }
  }
  workgroupBarrier();
  let rowMax = workgroupUniformLoad(&wgF[0]);
  let best = wgU[0];
  workgroupBarrier();
  if (params.temperature == 0.0) {
    if (lid == 0u) { ids[row] = i32(select(best, 0u, best == NONE)); }
    return;
  }
  let invT = 1.0 / params.temperature;
  let maxKey = orderKey(rowMax);

  // top-k: the largest key with at least k logits at or above it (ties with the k-th stay).
  var kthKey = 0u;
  if (params.topK > 0u && params.topK < V) {
    kthKey = bisect(base, 0u, maxKey, f32(V), f32(params.topK), false, rowMax, invT, lid).key;
  }

  // top-p: the largest key with at least p·Z of the survivors' mass Z at or above it; of the tokens tied at it,
  // the fewest (in index order) that bring the mass over it to p·Z.
  var cKey = kthKey;
  var nKeep = NONE;
  if (params.topP < 1.0) {
    let survivors = atOrAbove(base, kthKey, rowMax, invT, lid);
    let wanted = params.topP * survivors.y;
    let cut = bisect(base, kthKey, maxKey, survivors.x, wanted, true, rowMax, invT, lid);
    cKey = cut.key;
    if (!cut.alone) {
      let tied = exp((fromKey(cKey) - rowMax) * invT);
      nKeep = u32(clamp(ceil((wanted - cut.above) / tied), 1.0, 4294967040.0)); // tied == 0: its weight is 0 anyway
    }
  }

  // Contiguous chunks: thread lid owns [begin, end). First the rank of its first token tied at cKey.
  let chunk = (V + WG - 1u) / WG;
  let begin = min(V, lid * chunk);
  let end = min(V, begin + chunk);
  var ties = 0u;
  if (nKeep != NONE) {
    for (var i = begin; i < end; i++) { if (orderKey(logits[base + i]) == cKey) { ties++; } }
  }
  wgU[lid] = ties;
  workgroupBarrier();
  if (lid == 0u) {
    var before = 0u;
    for (var t = 0u; t < WG; t++) { let c = wgU[t]; wgU[t] = before; before += c; }
  }
  workgroupBarrier();
  let tieBase = wgU[lid];

  // The kept mass of each chunk, then the chunk holding u · (total kept mass).
  var rank = tieBase;
  var s = 0.0;
  for (var i = begin; i < end; i++) {
    let x = logits[base + i];
    let k = orderKey(x);
    let keep = k > cKey || (k == cKey && rank < nKeep);
    if (k == cKey) { rank++; }
    if (keep) { s += exp((x - rowMax) * invT); }
  }
  wgF[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var t = 0u; t < WG; t++) { total += wgF[t]; }
    let counter = rowCounters[row];
    let goal = uniform01(params.seed, params.step - u32(counter.y), u32(counter.x)) * total;
    var prefix = 0.0;
    var pick = NONE;
    var pickBase = 0.0;
    var lastWithMass = 0u;
    var lastBase = 0.0;
    for (var t = 0u; t < WG; t++) {
      let inclusive = prefix + wgF[t];
      if (wgF[t] > 0.0) { lastWithMass = t; lastBase = prefix; }
      if (pick == NONE && inclusive > goal) { pick = t; pickBase = prefix; }
      prefix = inclusive;
    }
    // u · total rounded up to the total: the last chunk with mass (its last kept token).
    chosen = select(pick, lastWithMass, pick == NONE);
    chosenBase = select(pickBase, lastBase, pick == NONE);
    drawTarget = goal;
  }
  workgroupBarrier();
  if (lid == chosen) {
    // The same loop as the chunk's sum, so its running total reaches exactly the inclusive prefix above.
    rank = tieBase;
    var acc = 0.0;
    var picked = NONE;
    var lastKept = begin;
    for (var i = begin; i < end; i++) {
      let x = logits[base + i];
      let k = orderKey(x);
      let keep = k > cKey || (k == cKey && rank < nKeep);
      if (k == cKey) { rank++; }
      if (keep) {
        acc += exp((x - rowMax) * invT);
        lastKept = i;
        if (picked == NONE && chosenBase + acc > drawTarget) { picked = i; }
      }
    }
    ids[row] = i32(select(picked, lastKept, picked == NONE));
  }
}
