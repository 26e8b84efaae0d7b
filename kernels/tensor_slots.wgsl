// The slots of a dispatch (kernels/tensor_slots.ts): the kernel declares `struct Slot` with an `end` field (its last
// workgroup + 1, counted over the dispatch) and `params.slots: array<Slot, SLOTS>`.
const SLOTS = {{SLOTS}}u;

// A slot's bindings as the kernel's function takes them: arrays of f32, or of vec4f quads (SlotValue).
alias Read = ptr<storage, array<{{VALUE}}>, read>;
alias Write = ptr<storage, array<{{VALUE}}>, read_write>;

// The slot that owns workgroup w, and its first workgroup; a workgroup past every slot's end gets the last slot.
fn slotOf(w: u32) -> vec2u {
  var s = 0u;
  var begin = 0u;
  while (s + 1u < SLOTS && w >= params.slots[s].end) {
    begin = params.slots[s].end;
    s++;
  }
  return vec2u(s, begin);
}
