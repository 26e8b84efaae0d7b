// Masks attention scores (or their gradients) laid out [B, KVH, G·T, S]: entries whose key the query does not
// see become FILL (bits: -inf before the softmax, 0 after it and in the backward). Row r of a head block is
// query t = r % T, so GQA can stack the G query heads of a kv head as extra rows.
override FILL_BITS: u32;
override WG: u32;

struct Params {
  n: u32, T: u32, S: u32,
  rowsPerBatch: u32, // KVH · G · T
  causal: u32, window: u32, positionOffset: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
// binding 1: keyRange [B, 2] i32, declared by attention_key_range.wgsl (the variant without padding leaves it out)
// Bound as bits so that -inf can be written without infinite arithmetic.
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let j = i % params.S;
  let row = i / params.S;
  let b = row / params.rowsPerBatch;
  let keys = keyRangeOf(b, params.S); // attention_key_range.wgsl or attention_no_key_range.wgsl
  let pos = row % params.T + params.positionOffset;
  out[i] = select(FILL_BITS, bitcast<u32>(x[i]), keyVisible(pos, j, keys, params.causal, params.window));
}
