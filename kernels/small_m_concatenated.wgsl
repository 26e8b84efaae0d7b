// matmul_small_m.wgsl's concatenated product of three weights of one format, [N0, K], [N1, K] and [N2, K]: columns
// [0, FIRST1) are weight0's rows, [FIRST1, FIRST2) weight1's, [FIRST2, N) weight2's, so that out [ROWS, N0 + N1 + N2]
// holds [x·W0ᵀ | x·W1ᵀ | x·W2ᵀ] along each row (attention's q, k and v). No epilogue: bindings 2 and 3, the one
// weight's bias and residual, hold weight1 and weight2 here.
override FIRST1: u32; // N0
override FIRST2: u32; // N0 + N1

@group(0) @binding(1) var<storage, read> weight0: array<u32>; // words of WEIGHT_FORMAT values, as weight1, weight2
@group(0) @binding(2) var<storage, read> weight1: array<u32>;
@group(0) @binding(3) var<storage, read> weight2: array<u32>;

fn weightWord(j: u32, i: u32) -> u32 {
  if (j == 0u) { return weight0[i]; }
  if (j == 1u) { return weight1[i]; }
  return weight2[i];
}

fn columnRow(n: u32) -> vec2u {
  if (n < FIRST1) { return vec2u(0u, n); }
  if (n < FIRST2) { return vec2u(1u, n - FIRST1); }
  return vec2u(2u, n - FIRST2);
}

fn storeColumn(m: u32, n: u32, s: u32) { out[m * params.N + n] = partials[s * WG]; }
