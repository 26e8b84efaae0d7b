// Partial sums of tensors for the global gradient norm, up to SLOTS tensors in one dispatch (kernels/tensor_slots.ts):
// the slot's k-th workgroup writes
//   out[outOffset + k] = sum of x[i]^2 (SQUARE) or of x[i] (not SQUARE) over its chunk [k * chunk, min(n, (k + 1) * chunk)).
// Thread t adds x[begin + t], x[begin + t + WG], ... in that order, then workgroupSum adds the threads' sums in a
// fixed tree: the result depends only on n, chunk and WG, never on scheduling (no atomics) nor on the slots beside
// it. The final pass runs one workgroup with SQUARE false over all the partials.
override WG: u32 = 256u;
override SQUARE: bool = true;
override ROW_THREADS: u32 = WG; // workgroupSum over the whole workgroup

alias Partial = f32; // workgroupSum (workgroup_sum.wgsl) sums these

struct Slot { n: u32, chunk: u32, end: u32, outOffset: u32 }
struct Params { slots: array<Slot, SLOTS> }

{{STORAGE}}
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> params: Params;

// This thread's share of chunk k of x.
fn threadSum(x: Read, slot: Slot, k: u32, lid: u32) -> f32 {
  let begin = k * slot.chunk;
  let end = min(slot.n, begin + slot.chunk);
  var s = 0.0;
  for (var i = begin + lid; i < end; i += WG) {
    let v = x[i];
    s += select(v, v * v, SQUARE);
  }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let w = wid.x + wid.y * nwg.x;
  let owner = slotOf(w); // uniform over the workgroup, as workgroupSum's barriers need
  let slot = params.slots[owner.x];
  if (w >= slot.end) { return; }
  var s = 0.0;
  switch (owner.x) {
{{CASES}}
    default: {}
  }
  let total = workgroupSum(s, lid);
  if (lid == 0u) { out[slot.outOffset + w - owner.y] = total; }
}
