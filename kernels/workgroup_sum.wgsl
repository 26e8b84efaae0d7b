// The sum of a value over a workgroup, added in a fixed order (deterministic); every invocation gets it.
// Prepended to the row-reduction kernels, which declare `alias Partial = f32;` (or vec2f) and `override WG`
// (a power of two: the tree halves it).
var<workgroup> partials: array<Partial, WG>;

fn workgroupSum(v: Partial, lid: u32) -> Partial {
  partials[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partials[lid] += partials[lid + stride]; }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier(); // all have read the total before partials is written again
  return total;
}
