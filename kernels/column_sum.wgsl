// For each slot (kernels/tensor_slots.ts; its entry point elementwise_slots.wgsl), out[j] = sum over p of
// partials[p, j], adding p = 0, 1, 2, ... in order: the deterministic second stage of the norms' weight gradients
// (partials [blocks, cols] from their backward kernels), every gradient of one backward in one dispatch.

struct Slot { n: u32, blocks: u32, end: u32, unused: u32 } // n: the columns
struct Params { slots: array<Slot, SLOTS>, perThread: u32 }

{{STORAGE}}
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> params: Params;

// The thread's columns of the slot from `first`, WG apart.
fn update(partials: Read, out: Write, first: u32, slot: Slot) {
  for (var k = 0u; k < params.perThread; k++) {
    let j = first + k * WG;
    if (j >= slot.n) { return; }
    var acc = 0.0;
    for (var p = 0u; p < slot.blocks; p++) { acc += partials[p * slot.n + j]; }
    out[j] = acc;
  }
}
