// matmul_small_m.wgsl's one weight: column n is weight row n, stored through the matmul epilogue (bias, activation,
// residual: the includes matmul_shape.ts epilogueParts names, the optional inputs at bindings 2 and 3).
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values

fn weightWord(j: u32, i: u32) -> u32 { return weight[i]; }

fn workgroupWeight(g: u32) -> u32 { return 0u; }

// Column c of workgroup g: (weight, row), here column n = g · COLUMNS + c of the product is weight row n.
fn columnRow(jg: u32, g: u32, c: u32) -> vec2u { return vec2u(0u, g * COLUMNS + c); }

fn rowCount(j: u32) -> u32 { return params.N; }

fn storeColumn(m: u32, row: vec2u, s: u32) {
  let i = m * params.N + row.y;
  out[i] = addResidual(activate(addBias(partials[s * WG], row.y)), i);
}
