// matmul_small_m.wgsl's one weight: column n is weight row n, stored through the matmul epilogue (bias, activation,
// residual: the includes matmul_shape.ts epilogueParts names, the optional inputs at bindings 2 and 3).
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values

fn weightWord(j: u32, i: u32) -> u32 { return weight[i]; }

fn columnRow(n: u32) -> vec2u { return vec2u(0u, n); }

fn storeColumn(m: u32, n: u32, s: u32) {
  let i = m * params.N + n;
  out[i] = addResidual(activate(addBias(partials[s * WG], n)), i);
}
