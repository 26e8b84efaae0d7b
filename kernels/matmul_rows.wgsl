// C[b] = op(A[b]) · op(B[b]) (+ bias) (+ residual), the product of matmul.wgsl, for SIMD CPUs: lavapipe runs a subgroup of 8
// invocations as one vector, and any load from memory as one load per lane (a word or a vec4 alike, and uniform
// addresses too), so here each load brings a quad (4 elements) and the quads of op(A) are shared between lanes
// by subgroupBroadcast (a register shuffle there). No workgroup memory and no barrier (a barrier is a fiber switch).
// A workgroup owns 8 · ROW_GROUPS rows of C, the same for every invocation; an invocation owns 4 neighbouring columns
// and 8 vec4 accumulators per group of 8 rows. Per step of 4 k it loads 4 quads of op(B) (a 4×4 block), one quad of
// op(A) per lane and group (the 8 lanes together: 8 rows × 4 k), and does 128 multiply-adds per group: two groups
// share the B block (6 loads for 256 multiply-adds instead of 5 for 128). Needs subgroups of at least 8 invocations
// (matmulRowsUnfit).
// Quads run along the stored rows: op(A) along k (A stored M×K) or along m (TRANS_A: K×M, M a multiple of 4),
// op(B) along n (B stored K×N, N a multiple of 4) or along k (TRANS_B: N×K). K and the batch strides are
// multiples of 4 (matmulRowsUnfit in matmul.ts), so every quad is aligned.
// Rows and columns past the edge read a clamped, valid quad and store nothing: the k loop has no branch.
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override A_FORMAT: u32 = 0u; // F32, F16 or BF16
override B_FORMAT: u32 = 0u;
override WG: u32 = 16u; // invocations, side by side along N: a multiple of the subgroup size
override ROW_GROUPS: u32 = 1u; // groups of 8 rows per workgroup: 1 or 2

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // elements between consecutive batch entries of A (0: broadcast)
  strideB: u32,
}

@group(0) @binding(0) var<storage, read> a: array<Quad{{A_BITS}}>; // quads of A_FORMAT values
@group(0) @binding(1) var<storage, read> b: array<Quad{{B_BITS}}>;
// Bindings 2 and 3, the optional bias and residual, addBias, addResidual and activate come from the includes
// that matmul_shape.ts epilogueParts names (bias.wgsl or no_bias.wgsl, ...).
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// Elements i..i+3 (i a multiple of 4) of each operand as stored.
fn loadA4(i: u32) -> vec4f { return quad{{A_BITS}}(a[i / 4u], A_FORMAT); }
fn loadB4(i: u32) -> vec4f { return quad{{B_BITS}}(b[i / 4u], B_FORMAT); }

// acc + Σ_kk bk[kk] · ak[kk]: four steps of k for one row and 4 columns, as multiply-adds.
fn step4(bk: mat4x4f, ak: vec4f, acc: vec4f) -> vec4f {
  return fma(bk[3], vec4f(ak.w), fma(bk[2], vec4f(ak.z), fma(bk[1], vec4f(ak.y), fma(bk[0], vec4f(ak.x), acc))));
}

// The 8 rows × 4 k of op(A) that the lanes' quads hold, rows 0..3 in lo and 4..7 in hi: lane r's quad is row r
// (A stored M×K), or, transposed, column r % 4 of the pair of 4 quads (TRANS_A: lanes hold 4 rows at one k).
fn rowsOf(mine: vec4f, lo: ptr<function, mat4x4f>, hi: ptr<function, mat4x4f>) {
  let v0 = subgroupBroadcast(mine, 0u); let v1 = subgroupBroadcast(mine, 1u);
  let v2 = subgroupBroadcast(mine, 2u); let v3 = subgroupBroadcast(mine, 3u);
  let v4 = subgroupBroadcast(mine, 4u); let v5 = subgroupBroadcast(mine, 5u);
  let v6 = subgroupBroadcast(mine, 6u); let v7 = subgroupBroadcast(mine, 7u);
  *lo = mat4x4f(v0, v1, v2, v3);
  *hi = mat4x4f(v4, v5, v6, v7);
  if (TRANS_A) { *lo = transpose(*lo); *hi = transpose(*hi); }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(subgroup_invocation_id) lane: u32) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let row0 = wid.y * 8u * ROW_GROUPS;
  let col0 = (wid.x * WG + lid.x) * 4u;
  let baseA = wid.z * params.strideA;
  let baseB = wid.z * params.strideB;

  // This lane's quad of op(A) at k = 0 (clamped), and its step per k += 4: row `lane` along k (A stored M×K),
  // or rows 4·(lane / 4)..+3 at k = lane % 4 (TRANS_A).
  // The second group's quad is the same 8 rows further (clamped).
  var aQuad: u32;
  var aQuad2: u32;
  var aStep: u32;
  if (TRANS_A) {
    aQuad = baseA + (lane & 3u) * M + min(row0 + 4u * ((lane >> 2u) & 1u), M - 4u);
    aQuad2 = baseA + (lane & 3u) * M + min(row0 + 8u + 4u * ((lane >> 2u) & 1u), M - 4u);
    aStep = 4u * M;
  } else {
    aQuad = baseA + min(row0 + (lane & 7u), M - 1u) * K;
    aQuad2 = baseA + min(row0 + 8u + (lane & 7u), M - 1u) * K;
    aStep = 4u;
  }
  // Where op(B)'s quads start at k = 0 (clamped): column j's (TRANS_B) or the 4 columns' (B stored K×N).
  let bCol = select(baseB + min(col0, N - 4u), baseB + min(col0, N - 1u) * K, TRANS_B);
  let bNext = select(N, K, TRANS_B); // from one quad to the next: rows k..k+3, or columns col0..col0+3

  var c0 = vec4f(); var c1 = vec4f(); var c2 = vec4f(); var c3 = vec4f();
  var c4 = vec4f(); var c5 = vec4f(); var c6 = vec4f(); var c7 = vec4f();
  var d0 = vec4f(); var d1 = vec4f(); var d2 = vec4f(); var d3 = vec4f(); // the second group's rows
  var d4 = vec4f(); var d5 = vec4f(); var d6 = vec4f(); var d7 = vec4f();
  for (var k = 0u; k < K; k += 4u) {
    // Column kk of bk: op(B)[k + kk, col0..col0+3].
    let bOff = select(bCol + k * N, bCol + k, TRANS_B);
    var bk = mat4x4f(loadB4(bOff), loadB4(bOff + bNext), loadB4(bOff + 2u * bNext), loadB4(bOff + 3u * bNext));
    if (TRANS_B) { bk = transpose(bk); }
    var lo: mat4x4f;
    var hi: mat4x4f;
    rowsOf(loadA4(aQuad + (k / 4u) * aStep), &lo, &hi);
    c0 = step4(bk, lo[0], c0); c1 = step4(bk, lo[1], c1); c2 = step4(bk, lo[2], c2); c3 = step4(bk, lo[3], c3);
    c4 = step4(bk, hi[0], c4); c5 = step4(bk, hi[1], c5); c6 = step4(bk, hi[2], c6); c7 = step4(bk, hi[3], c7);
    if (ROW_GROUPS > 1u) {
      rowsOf(loadA4(aQuad2 + (k / 4u) * aStep), &lo, &hi);
      d0 = step4(bk, lo[0], d0); d1 = step4(bk, lo[1], d1); d2 = step4(bk, lo[2], d2); d3 = step4(bk, lo[3], d3);
      d4 = step4(bk, hi[0], d4); d5 = step4(bk, hi[1], d5); d6 = step4(bk, hi[2], d6); d7 = step4(bk, hi[3], d7);
    }
  }

  let acc = array<vec4f, 16>(c0, c1, c2, c3, c4, c5, c6, c7, d0, d1, d2, d3, d4, d5, d6, d7);
  let baseC = wid.z * M * N;
  for (var i = 0u; i < 8u * ROW_GROUPS; i++) {
    let m = row0 + i;
    if (m >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = col0 + j;
      if (n >= N) { break; }
      c[baseC + m * N + n] = addResidual(activate(addBias(acc[i][j], n)), baseC + m * N + n);
    }
  }
}
