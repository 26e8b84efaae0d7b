// The sum of a value over each row's ROW_THREADS consecutive invocations, added in a fixed order (deterministic);
// each of them gets it. A workgroup reduces WG / ROW_THREADS rows side by side (ROW_THREADS a power of two), and a
// row's tree is the same whatever rows share the workgroup. Prepended to the row-reduction kernels, which declare
// `alias Partial = f32;` (or vec2f), `override WG` and `override ROW_THREADS` (WG itself for one row a workgroup).
var<workgroup> partials: array<Partial, WG>;

fn workgroupSum(v: Partial, lid: u32) -> Partial {
  partials[lid] = v;
  workgroupBarrier();
  let lane = lid % ROW_THREADS;
  for (var stride = ROW_THREADS / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) { partials[lid] += partials[lid + stride]; }
    workgroupBarrier();
  }
  let total = partials[lid - lane];
  workgroupBarrier(); // all have read the total before partials is written again
  return total;
}
