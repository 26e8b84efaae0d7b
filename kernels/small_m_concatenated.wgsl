// matmul_small_m.wgsl's concatenated product of three weights of one format, [N0, K], [N1, K] and [N2, K]: columns
// [0, FIRST1) are weight0's rows, [FIRST1, FIRST2) weight1's, [FIRST2, N) weight2's, so that out [ROWS, N0 + N1 + N2]
// holds [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ] along each row (attention's q, k and v). No epilogue: bindings 2 and 3, the one
// weight's bias and residual, hold weight1 and weight2 here.
override FIRST1: u32; // N0
override FIRST2: u32; // N0 + N1
// Each weight's rows take whole workgroups, ceil(Ni / COLUMNS) of them: [0, GROUPS1) weight0's, [GROUPS1, GROUPS2)
// weight1's, the rest weight2's, so that a workgroup's weight is uniform (workgroupWeight). Derived: the host sets FIRST*.
override GROUPS1: u32 = (FIRST1 + COLUMNS - 1u) / COLUMNS;
override GROUPS2: u32 = GROUPS1 + (FIRST2 - FIRST1 + COLUMNS - 1u) / COLUMNS;

@group(0) @binding(1) var<storage, read> weight0: array<u32>; // words of WEIGHT_FORMAT values, as weight1, weight2
@group(0) @binding(2) var<storage, read> weight1: array<u32>;
@group(0) @binding(3) var<storage, read> weight2: array<u32>;

fn weightWord(j: u32, i: u32) -> u32 {
  if (j == 0u) { return weight0[i]; }
  if (j == 1u) { return weight1[i]; }
  return weight2[i];
}

fn workgroupWeight(g: u32) -> u32 { return select(select(2u, 1u, g < GROUPS2), 0u, g < GROUPS1); }

// Column c of workgroup g: weight jg's row (g - its first workgroup) · COLUMNS + c.
fn columnRow(jg: u32, g: u32, c: u32) -> vec2u {
  let start = select(select(GROUPS2, GROUPS1, jg == 1u), 0u, jg == 0u);
  return vec2u(jg, (g - start) * COLUMNS + c);
}

fn rowCount(j: u32) -> u32 { return select(select(params.N - FIRST2, FIRST2 - FIRST1, j == 1u), FIRST1, j == 0u); }

// Weight j's row r is column FIRSTj + r of out.
fn storeColumn(m: u32, row: vec2u, s: u32) {
  let first = select(select(FIRST2, FIRST1, row.x == 1u), 0u, row.x == 0u);
  out[m * params.N + first + row.y] = partials[s * WG];
}
