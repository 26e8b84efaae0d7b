// The entry point of an elementwise slot kernel (kernels/tensor_slots.ts): workgroup w of slot s hands each of its WG
// threads params.perThread of the slot's elements, WG apart, from `first`, through the slot's switch arm (CASES) to
// the kernel's update(..., first, slot), which loops over them.
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let w = wid.x + wid.y * nwg.x;
  let owner = slotOf(w);
  let slot = params.slots[owner.x];
  let first = (w - owner.y) * WG * params.perThread + lid;
  if (w >= slot.end) { return; }
  switch (owner.x) {
{{CASES}}
    default: {}
  }
}
