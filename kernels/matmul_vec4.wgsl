// C[b] = f(op(A[b]) · op(B[b]) (+ bias)) (+ residual), the product of matmul.wgsl for f32 operands on GPUs, in the
// standard SGEMM design: vec4 loads from global memory, operand tiles staged in workgroup memory as vec4, each
// thread's inner step reads 2 vec4 of op(A) and 2 of op(B) (its 8×8 block) for 64 multiply-adds, and the next k
// tile's global loads are in flight (in registers) while the current one is computed from the other of two
// staging buffers, so a k step needs one barrier.
// A is stored M×K (K×M when TRANS_A), B K×N (N×K when TRANS_B), C M×N, all row-major f32; batch strides of 0
// broadcast. A vec4 holds 4 elements of a stored row, so each operand's row length (K for A, M for Aᵀ, N for B,
// K for Bᵀ) and the batch strides are multiples of 4 (matmulVec4Unfit); M, N and K are otherwise ragged.
// A workgroup computes a TILE_M×TILE_N tile of C as WG_X×WG_Y threads; a thread holds THREAD_M×THREAD_N outputs
// (4, 8 or 16 each way: 1, 2 or 4 quads of 4), quads WG_Y·4 rows and WG_X·4 columns apart (half a tile for 8×8), so
// that neighbouring threads read neighbouring vec4s of a staged row (conflict-free) and its quads stay in registers.
// Threads take their block in rows of WG_X, or, with WARP_X, each group of 32 (a warp) a WARP_X × 32 / WARP_X patch, so
// that a warp's vec4 reads of a staged row touch fewer distinct vec4s (8 × 4: 8 of op(B), 4 of op(A), one wavefront each).
// An operand stored along K (A M×K, B N×K) is transposed as it is staged, 4 scalar stores per vec4; its staged vec4
// columns are XOR-swizzled per group of 4 k rows (swizzle()) so that a warp's 32 stores of one row hit 32 banks.
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override TILE_M: u32 = 128u;
override TILE_N: u32 = 128u;
override TILE_K: u32 = 8u; // a multiple of 4
override THREAD_M: u32 = 8u; // 4, 8 or 16 (THREAD_M · THREAD_N at most 128)
override THREAD_N: u32 = 8u; // 4, 8 or 16
override WARP_X: u32 = 0u; // threads of a group of 32 along N (0: rows of WG_X threads)
// Derived from the constants above; the host sets only those.
override WG_X: u32 = TILE_N / THREAD_N;
override WG_Y: u32 = TILE_M / THREAD_M;
override THREADS: u32 = WG_X * WG_Y;
override QUADS_M: u32 = THREAD_M / 4u; // quads per thread along M
override QUADS_N: u32 = THREAD_N / 4u;
override ROW_A: u32 = TILE_M / 4u; // vec4s in one k row of the staged op(A) tile
override ROW_B: u32 = TILE_N / 4u;
override STAGE_A: u32 = TILE_K * ROW_A; // vec4s in one staging buffer of op(A)
override STAGE_B: u32 = TILE_K * ROW_B;
override STAGES_A: u32 = 2u * STAGE_A; // both buffers
override STAGES_B: u32 = 2u * STAGE_B;
override LOADS_A: u32 = (STAGE_A + THREADS - 1u) / THREADS; // global vec4 loads per thread and k tile
override LOADS_B: u32 = (STAGE_B + THREADS - 1u) / THREADS;

// Register arrays need a constant size; loops run to the overrides above, which the compiler then unrolls. The spec
// sizes the block's arrays to the variant's (QUADS_M = MAX_QUADS_M, QUADS_N = MAX_QUADS_N), so none is left unused.
const MAX_QUADS_M = {{MAX_QUADS_M}}u;
const MAX_QUADS_N = {{MAX_QUADS_N}}u;
const MAX_LOADS = 4u;

// The staged vec4 column of column q in k row kk, for an operand transposed as it is staged: a warp of 32 threads
// stages 32 / (TILE_K / 4) consecutive rows of M (or N), 32 / TILE_K vec4 columns, in each of TILE_K / 4 groups of 4 k
// rows; XOR with (kk / 4) · 32 / TILE_K moves those groups to disjoint vec4 columns modulo 8 (the 32 banks a row
// segment of 8 vec4 spans). A bijection within each aligned 8 vec4 (the tile is a multiple of 32 wide), so reads of
// consecutive vec4 stay conflict-free.
fn swizzle(q: u32, kk: u32) -> u32 { return q ^ ((kk / 4u) * (32u / TILE_K)); }

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // elements between consecutive batch entries of A (0: broadcast), a multiple of 4
  strideB: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read> b: array<vec4f>;
// Bindings 2 and 3, the optional bias and residual, and the store's addBias, activate and addResidual come from the
// epilogue's includes (matmul_shape.ts epilogueParts).
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// [2][TILE_K][TILE_M / 4] and [2][TILE_K][TILE_N / 4]: op(A) and op(B) tiles k-major, two staging buffers each.
var<workgroup> tileA: array<vec4f, STAGES_A>;
var<workgroup> tileB: array<vec4f, STAGES_B>;

// The e-th vec4 of an operand's k tile as stored (0 outside the matrix), and where it goes in the staged tile.
// A row-contiguous operand (A stored M×K, B stored N×K) brings 4 k of one row: it is transposed into 4 staged
// rows; a column-contiguous one (Aᵀ stored K×M, B stored K×N) brings 4 rows of one k: one staged vec4.
fn loadA(e: u32, k0: u32, row0: u32, base: u32) -> vec4f {
  let M = params.M;
  let K = params.K;
  if (TRANS_A) {
    let k = k0 + e / ROW_A;
    let m = row0 + (e % ROW_A) * 4u;
    if (k < K && m < M) { return a[base + k * (M / 4u) + m / 4u]; }
  } else {
    let m = row0 + e / (TILE_K / 4u);
    let k = k0 + (e % (TILE_K / 4u)) * 4u;
    if (m < M && k < K) { return a[base + m * (K / 4u) + k / 4u]; }
  }
  return vec4f(0.0);
}

fn loadB(e: u32, k0: u32, col0: u32, base: u32) -> vec4f {
  let N = params.N;
  let K = params.K;
  if (TRANS_B) {
    let n = col0 + e / (TILE_K / 4u);
    let k = k0 + (e % (TILE_K / 4u)) * 4u;
    if (n < N && k < K) { return b[base + n * (K / 4u) + k / 4u]; }
  } else {
    let k = k0 + e / ROW_B;
    let n = col0 + (e % ROW_B) * 4u;
    if (k < K && n < N) { return b[base + k * (N / 4u) + n / 4u]; }
  }
  return vec4f(0.0);
}

fn stageA(stage: u32, e: u32, v: vec4f) {
  if (TRANS_A) {
    tileA[stage * STAGE_A + e] = v; // e = kk · ROW_A + m / 4
    return;
  }
  let mm = e / (TILE_K / 4u);
  let kk = (e % (TILE_K / 4u)) * 4u;
  let at = stage * STAGE_A + kk * ROW_A + swizzle(mm / 4u, kk);
  let lane = mm % 4u;
  tileA[at][lane] = v.x;
  tileA[at + ROW_A][lane] = v.y;
  tileA[at + 2u * ROW_A][lane] = v.z;
  tileA[at + 3u * ROW_A][lane] = v.w;
}

fn stageB(stage: u32, e: u32, v: vec4f) {
  if (!TRANS_B) {
    tileB[stage * STAGE_B + e] = v; // e = kk · ROW_B + n / 4
    return;
  }
  let nn = e / (TILE_K / 4u);
  let kk = (e % (TILE_K / 4u)) * 4u;
  let at = stage * STAGE_B + kk * ROW_B + swizzle(nn / 4u, kk);
  let lane = nn % 4u;
  tileB[at][lane] = v.x;
  tileB[at + ROW_B][lane] = v.y;
  tileB[at + 2u * ROW_B][lane] = v.z;
  tileB[at + 3u * ROW_B][lane] = v.w;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) wid: vec3u) {
  let M = params.M;
  let N = params.N;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let baseA = wid.z * (params.strideA / 4u); // in vec4s
  let baseB = wid.z * (params.strideB / 4u);
  let tiles = (params.K + TILE_K - 1u) / TILE_K;
  var tx = lid.x; // the thread's first quad along N (vec4 column of the staged op(B)), then every WG_X
  var ty = lid.y; // along M, then every WG_Y
  if (WARP_X != 0u) {
    let width = max(WARP_X, 1u); // WARP_X, which the compiler must not see divide in the branch it drops
    let groups = WG_X / width; // groups of 32 along N
    let lane = thread % 32u;
    tx = (thread / 32u % groups) * width + lane % width;
    ty = (thread / 32u / groups) * (32u / width) + lane / width;
  }

  var acc: array<vec4f, 4u * MAX_QUADS_M * MAX_QUADS_N>; // [row of the block][quad along N]: THREAD_M × THREAD_N
  var nextA: array<vec4f, MAX_LOADS>;
  var nextB: array<vec4f, MAX_LOADS>;
  var av: array<vec4f, MAX_QUADS_M>;
  var bv: array<vec4f, MAX_QUADS_N>;

  for (var l = 0u; l < LOADS_A; l++) {
    let e = thread + l * THREADS;
    if (e < STAGE_A) { stageA(0u, e, loadA(e, 0u, row0, baseA)); }
  }
  for (var l = 0u; l < LOADS_B; l++) {
    let e = thread + l * THREADS;
    if (e < STAGE_B) { stageB(0u, e, loadB(e, 0u, col0, baseB)); }
  }
  workgroupBarrier();

  for (var t = 0u; t < tiles; t++) {
    let stage = t & 1u;
    let more = t + 1u < tiles;
    // The next tile's loads are issued before this tile's multiply-adds, which hide their latency.
    if (more) {
      let k0 = (t + 1u) * TILE_K;
      for (var l = 0u; l < LOADS_A; l++) {
        let e = thread + l * THREADS;
        if (e < STAGE_A) { nextA[l] = loadA(e, k0, row0, baseA); }
      }
      for (var l = 0u; l < LOADS_B; l++) {
        let e = thread + l * THREADS;
        if (e < STAGE_B) { nextB[l] = loadB(e, k0, col0, baseB); }
      }
    }
    for (var kk = 0u; kk < TILE_K; kk++) {
      let rowA = stage * STAGE_A + kk * ROW_A;
      let rowB = stage * STAGE_B + kk * ROW_B;
      for (var i = 0u; i < QUADS_M; i++) {
        let q = ty + i * WG_Y;
        av[i] = tileA[rowA + select(swizzle(q, kk), q, TRANS_A)];
      }
      for (var j = 0u; j < QUADS_N; j++) {
        let q = tx + j * WG_X;
        bv[j] = tileB[rowB + select(q, swizzle(q, kk), TRANS_B)];
      }
      for (var i = 0u; i < QUADS_M; i++) {
        for (var r = 0u; r < 4u; r++) {
          let x = vec4f(av[i][r]);
          for (var j = 0u; j < QUADS_N; j++) {
            let s = (i * 4u + r) * MAX_QUADS_N + j;
            acc[s] = fma(x, bv[j], acc[s]);
          }
        }
      }
    }
    // The other buffer was last read before the previous barrier, so it can be refilled without another.
    if (more) {
      for (var l = 0u; l < LOADS_A; l++) {
        let e = thread + l * THREADS;
        if (e < STAGE_A) { stageA(1u - stage, e, nextA[l]); }
      }
      for (var l = 0u; l < LOADS_B; l++) {
        let e = thread + l * THREADS;
        if (e < STAGE_B) { stageB(1u - stage, e, nextB[l]); }
      }
    }
    workgroupBarrier();
  }

  let baseC = wid.z * M * N;
  for (var i = 0u; i < QUADS_M; i++) {
    for (var r = 0u; r < 4u; r++) {
      let m = row0 + (ty + i * WG_Y) * 4u + r;
      if (m >= M) { continue; }
      for (var j = 0u; j < QUADS_N; j++) {
        let v = acc[(i * 4u + r) * MAX_QUADS_N + j];
        let n0 = col0 + (tx + j * WG_X) * 4u;
        for (var q = 0u; q < 4u; q++) {
          let n = n0 + q;
          if (n < N) { c[baseC + m * N + n] = addResidual(activate(addBias(v[q], n)), baseC + m * N + n); }
        }
      }
    }
  }
}
