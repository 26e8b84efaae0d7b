// The tokens sorted by (id, position), for embedding_backward.wgsl: order[rank(t)] = t with
// rank(t) = #{u : ids[u] < ids[t]} + #{u < t : ids[u] == ids[t]}, a stable counting sort with no atomics.
// One thread per token counts over all tokens, which each workgroup streams through a shared tile: N² comparisons.
override WG: u32 = 256u;

struct Params { tokens: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read_write> order: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> tile: array<i32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = gid.x + gid.y * nwg.x * WG;
  let n = params.tokens;
  let id = ids[min(t, n - 1u)];
  var rank = 0u;
  for (var start = 0u; start < n; start += WG) {
    workgroupBarrier(); // the previous tile has been read
    if (start + lid < n) { tile[lid] = ids[start + lid]; }
    workgroupBarrier();
    for (var k = 0u; k < min(WG, n - start); k++) {
      let other = tile[k];
      rank += u32(other < id || (other == id && start + k < t));
    }
  }
  if (t < n) { order[rank] = t; }
}
