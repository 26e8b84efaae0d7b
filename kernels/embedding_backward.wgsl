// Backward of embedding.wgsl: forward was out[t] = weight[ids[t]], so dweight[v] = Σ_{t : ids[t] = v} dout[t].
// Deterministic without atomics: the tokens come sorted by (id, position) (embedding_order.wgsl), so each id's
// tokens form a run; the workgroup at the start of a run owns that row of dweight and sums the run in token order.
// dweight may be a window of the table's gradient, rows [first, first + vocab): ids outside it are skipped, and
// rows of ids that do not occur are left as they are (the caller zeroes dweight).
override WG: u32 = 256u;

struct Params { tokens: u32, cols: u32, vocab: u32, first: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = wid.x + wid.y * nwg.x; // position in sorted order
  if (p >= params.tokens) { return; }
  let id = ids[order[p]];
  if (p > 0u && ids[order[p - 1u]] == id) { return; } // not the start of its run
  if (id < 0 || u32(id) < params.first || u32(id) - params.first >= params.vocab) { return; }
  let row = (u32(id) - params.first) * params.cols;
  for (var c = lid; c < params.cols; c += WG) {
    var acc = 0.0;
    for (var q = p; q < params.tokens; q++) {
      let t = order[q];
      if (ids[t] != id) { break; }
      acc += dout[t * params.cols + c];
    }
    dweight[row + c] = acc;
  }
}
