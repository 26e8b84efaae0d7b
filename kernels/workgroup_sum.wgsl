// The sum of a value over each row's ROW_THREADS consecutive invocations, added in a fixed order (deterministic);
// each of them gets it. A workgroup reduces WG / ROW_THREADS rows side by side (ROW_THREADS a power of two), and a
// row's tree is the same whatever rows share the workgroup. Prepended to the row-reduction kernels, which declare
// `alias Partial = f32;` (or vec2f), `override WG` and `override ROW_THREADS` (WG itself for one row a workgroup).
// A row of one thread takes no barrier: its sum is its own (a CPU driver's shape, kernels/spec.ts ROW_REDUCTION_SHAPES).
var<workgroup> partials: array<Partial, WG>;

fn workgroupSum(v: Partial, lid: u32) -> Partial {
  if (ROW_THREADS == 1u) { return v; }
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

// The row invocation lid reduces, of the ROWS rows from `first`, its lane among the row's threads, and whether the row
// is one of the `rows` there are (a row past the end still takes part in the barriers, over no columns).
struct RowLane { row: u32, lane: u32, live: bool }

fn rowLane(lid: u32, first: u32, rows: u32) -> RowLane {
  let row = first + lid / ROW_THREADS;
  return RowLane(row, lid % ROW_THREADS, row < rows);
}
