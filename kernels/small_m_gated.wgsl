// matmul_small_m.wgsl's gated product of two weights of one format, gate and up [N / 2, K]: column 2i is gate's row
// i, column 2i + 1 up's (COLUMNS even keeps each pair in one workgroup), stored as out[m, i] = f(x·gateᵀ) · (x·upᵀ),
// out [ROWS, N / 2], f = activation() of activation_math.wgsl (FN): SwiGLU for SiLU, computed as gated_activation.wgsl
// computes it from the two products' outputs. Binding 3 (the one weight's residual) is left out.
@group(0) @binding(1) var<storage, read> gate: array<u32>; // words of WEIGHT_FORMAT values, as up
@group(0) @binding(2) var<storage, read> up: array<u32>;

fn weightWord(j: u32, i: u32) -> u32 {
  if (j == 0u) { return gate[i]; }
  return up[i];
}

fn workgroupWeight(g: u32) -> u32 { return 0u; } // a workgroup's columns alternate between the two

// Column c of workgroup g, n = g · COLUMNS + c: the weight is c % 2 (g · COLUMNS is even), a constant once c is unrolled.
fn columnRow(jg: u32, g: u32, c: u32) -> vec2u { return vec2u(c % 2u, (g * COLUMNS + c) / 2u); }

fn rowCount(j: u32) -> u32 { return params.N / 2u; }

// Only the gate's column of a pair stores; its up partner's sum is the next one, partials[(s + 1) · WG].
fn storeColumn(m: u32, row: vec2u, s: u32) {
  if (row.x == 0u) { out[m * (params.N / 2u) + row.y] = activation(partials[s * WG]) * partials[(s + 1u) * WG]; }
}
