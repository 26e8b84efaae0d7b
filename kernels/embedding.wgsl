// out[t, c] = weight[ids[t] - first, c] for the ids in this window of the table, rows [first, first + vocab): each
// of a workgroup's WG threads takes params.perThread output elements, WG apart, as the elementwise kernels do
// (kernels/spec.ts ELEMENTWISE_SHAPES), but divides its first index by cols once and then carries (token, column)
// by WG: lavapipe has no vector integer divide. The table may be a window of a larger one (bound window by window
// when it exceeds one binding); the launch with zeroOthers set writes 0 where an id is outside its window, so that ids
// outside the whole table give 0 and later windows overwrite their own rows.
// The table is stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit word, the even element in the low
// half, e.g. a frozen model's table); out is f32.
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16

override WG: u32 = 256u;

struct Params { n: u32, perThread: u32, cols: u32, vocab: u32, first: u32, zeroOthers: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn loadWeight(i: u32) -> f32 { return widen(weight[wordOf(i, WEIGHT_FORMAT)], i, WEIGHT_FORMAT); }

// Output element i = t · cols + c.
fn element(i: u32, t: u32, c: u32) {
  let id = ids[t];
  let row = u32(id) - params.first; // wraps around for ids below the window
  if (id >= 0 && u32(id) >= params.first && row < params.vocab) { out[i] = loadWeight(row * params.cols + c); }
  else if (params.zeroOthers != 0u) { out[i] = 0.0; }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = (wid.x + wid.y * nwg.x) * WG * params.perThread + lid;
  var t = first / params.cols;
  var c = first % params.cols;
  let stepRows = WG / params.cols; // the next element, WG further on: stepRows rows and stepCols columns
  let stepCols = WG % params.cols;
  for (var k = 0u; k < params.perThread; k++) {
    let i = first + k * WG;
    if (i >= params.n) { return; }
    element(i, t, c);
    t += stepRows;
    c += stepCols;
    if (c >= params.cols) { c -= params.cols; t += 1u; }
  }
}
