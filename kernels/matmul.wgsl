// C[b] = op(A[b]) · op(B[b]) (+ bias) (+ residual) for b < batch, op = identity or transpose: C is M×N, op(A) M×K, op(B) K×N.
// A is stored M×K (K×M when TRANS_A), B K×N (N×K when TRANS_B), C M×N, all row-major; batch strides of 0
// broadcast an operand (e.g. one weight for every batch entry). A and B are stored as f32 or as 16-bit floats
// (f16, bf16: two per 32-bit word, the even element in the low half, e.g. frozen weights), widened to f32 on load.
// A workgroup computes a TILE_M×TILE_N tile of C, stepping through K by TILE_K with both operand tiles in
// workgroup memory; each thread accumulates THREAD_M×THREAD_N outputs in registers, at rows ty + i·WG_Y and
// columns tx + j·WG_X so that neighbouring threads read neighbouring words of the tiles and of C.
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override A_FORMAT: u32 = 0u; // F32, F16 or BF16
override B_FORMAT: u32 = 0u;
override TILE_M: u32 = 64u;
override TILE_N: u32 = 64u;
override TILE_K: u32 = 16u;
override THREAD_M: u32 = 4u; // at most MAX_THREAD_TILE
override THREAD_N: u32 = 4u; // at most MAX_THREAD_TILE
// Derived from the constants above; the host sets only those (matmulKernel.constants).
override WG_X: u32 = TILE_N / THREAD_N;
override WG_Y: u32 = TILE_M / THREAD_M;
override TILE_A_SIZE: u32 = TILE_K * TILE_M;
override TILE_B_SIZE: u32 = TILE_K * TILE_N;

// Register arrays need a constant size; loops run to THREAD_M/THREAD_N, which the compiler then unrolls.
const MAX_THREAD_TILE = 8u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // elements between consecutive batch entries of A (0: broadcast)
  strideB: u32,
}

@group(0) @binding(0) var<storage, read> a: array<u32>; // words of A_FORMAT values
@group(0) @binding(1) var<storage, read> b: array<u32>; // words of B_FORMAT values
// Bindings 2 and 3, the optional bias and residual, addBias, addResidual and activate come from the includes
// that matmul_shape.ts epilogueParts names (bias.wgsl or no_bias.wgsl, ...).
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> tileA: array<f32, TILE_A_SIZE>; // [TILE_K][TILE_M]: op(A) tile, k-major
var<workgroup> tileB: array<f32, TILE_B_SIZE>; // [TILE_K][TILE_N]

fn loadA(i: u32) -> f32 { return widen(a[wordOf(i, A_FORMAT)], i, A_FORMAT); }
fn loadB(i: u32) -> f32 { return widen(b[wordOf(i, B_FORMAT)], i, B_FORMAT); }

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let baseA = wid.z * params.strideA;
  let baseB = wid.z * params.strideB;
  let thread = lid.y * WG_X + lid.x;
  let threads = WG_X * WG_Y;

  var acc: array<f32, MAX_THREAD_TILE * MAX_THREAD_TILE>;
  var aCol: array<f32, MAX_THREAD_TILE>;
  var bRow: array<f32, MAX_THREAD_TILE>;

  for (var k0 = 0u; k0 < K; k0 += TILE_K) {
    // Consecutive threads take consecutive addresses of the operand as stored, so global reads coalesce.
    for (var e = thread; e < TILE_A_SIZE; e += threads) {
      var kk: u32;
      var mm: u32;
      if (TRANS_A) { mm = e % TILE_M; kk = e / TILE_M; } else { kk = e % TILE_K; mm = e / TILE_K; }
      let m = row0 + mm;
      let k = k0 + kk;
      var v = 0.0;
      if (m < M && k < K) {
        if (TRANS_A) { v = loadA(baseA + k * M + m); } else { v = loadA(baseA + m * K + k); }
      }
      tileA[kk * TILE_M + mm] = v;
    }
    for (var e = thread; e < TILE_B_SIZE; e += threads) {
      var kk: u32;
      var nn: u32;
      if (TRANS_B) { kk = e % TILE_K; nn = e / TILE_K; } else { nn = e % TILE_N; kk = e / TILE_N; }
      let n = col0 + nn;
      let k = k0 + kk;
      var v = 0.0;
      if (n < N && k < K) {
        if (TRANS_B) { v = loadB(baseB + n * K + k); } else { v = loadB(baseB + k * N + n); }
      }
      tileB[kk * TILE_N + nn] = v;
    }
    workgroupBarrier();

    for (var kk = 0u; kk < TILE_K; kk++) {
      for (var i = 0u; i < THREAD_M; i++) { aCol[i] = tileA[kk * TILE_M + lid.y + i * WG_Y]; }
      for (var j = 0u; j < THREAD_N; j++) { bRow[j] = tileB[kk * TILE_N + lid.x + j * WG_X]; }
      for (var i = 0u; i < THREAD_M; i++) {
        for (var j = 0u; j < THREAD_N; j++) {
          acc[i * MAX_THREAD_TILE + j] = fma(aCol[i], bRow[j], acc[i * MAX_THREAD_TILE + j]);
        }
      }
    }
    workgroupBarrier();
  }

  let baseC = wid.z * M * N;
  for (var i = 0u; i < THREAD_M; i++) {
    let m = row0 + lid.y + i * WG_Y;
    if (m >= M) { break; }
    for (var j = 0u; j < THREAD_N; j++) {
      let n = col0 + lid.x + j * WG_X;
      if (n >= N) { break; }
      c[baseC + m * N + n] = addResidual(activate(addBias(acc[i * MAX_THREAD_TILE + j], n)), baseC + m * N + n);
    }
  }
}
