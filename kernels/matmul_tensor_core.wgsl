// C[b] = op(A[b]) · op(B[b]) (+ bias) (+ residual) on the tensor cores: f16 operands, f32 accumulators (subgroup matrices).
// Same bindings, params, layouts and transposes as kernels/matmul.wgsl (the f32 reference and fallback): A is
// stored M×K (K×M when TRANS_A), B K×N (N×K when TRANS_B), C M×N f32, row-major; batch strides of 0 broadcast.
// A and B hold f16, two per u32 word (the even element in the low half).
//
// matmul_tensor_core.ts adds the directives `enable f16; enable chromium_experimental_subgroup_matrix;` and
// `diagnostic(off, chromium.subgroup_matrix_uniformity);` (offsets derive from lid / SG), includes bias.wgsl or
// no_bias.wgsl and residual.wgsl or no_residual.wgsl, and fills in the matrix types Left (TM×TK), Right (TK×TN), Acc (TM×TN, f32) and these constants:
//   SG lanes per subgroup (fixed on the device), SGM×SGN subgroups (NSG of them, WG = SG·NSG invocations);
//   subgroup sg = lid / SG owns a block of WM×WN result matrices at subgroup row sg / SGN, column sg % SGN;
//   the workgroup's C tile is BM×BN = (SGM·WM·TM)×(SGN·WN·TN); BK the K step (a multiple of TK);
//   *_STRIDE the padded row strides of the tiles (16-byte aligned rows, as Vulkan's cooperative-matrix loads
//   need, and rows shifted across the memory banks), *_SIZE their lengths.
//
// Per K step every invocation stages word pairs of op(A) into aTile [BM][BK] and of op(B) into bTile [BK][BN],
// row-major whatever the transposes (the transposes live in the staging alone, so every matrix load is
// row_major), zero beyond M, N and K: ragged shapes need no padding outside. Then each subgroup multiplies its WM
// left and WN right matrices per TK. At the end each result matrix goes through cTile (one TM×TN block per
// subgroup) to C, where bias and bounds apply. Every subgroup-matrix call is in a loop whose trip count is a
// constant or workgroup-uniform, so whole subgroups execute it.

alias Left = subgroup_matrix_left<f16, {{TK}}, {{TM}}>;
alias Right = subgroup_matrix_right<f16, {{TN}}, {{TK}}>;
alias Acc = subgroup_matrix_result<f32, {{TN}}, {{TM}}>;
const SG = {{SG}}u;
const SGM = {{SGM}}u;
const SGN = {{SGN}}u;
const NSG = {{NSG}}u;
const WG = {{WG}}u;
const TM = {{TM}}u;
const TN = {{TN}}u;
const TK = {{TK}}u;
const WM = {{WM}}u;
const WN = {{WN}}u;
const BM = {{BM}}u;
const BN = {{BN}}u;
const BK = {{BK}}u;
const A_STRIDE = {{A_STRIDE}}u;
const B_STRIDE = {{B_STRIDE}}u;
const C_STRIDE = {{C_STRIDE}}u;
const A_SIZE = {{A_SIZE}}u;
const B_SIZE = {{B_SIZE}}u;
const C_SIZE = {{C_SIZE}}u;

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // elements between consecutive batch entries of A (0: broadcast)
  strideB: u32,
}

@group(0) @binding(0) var<storage, read> a: array<u32>; // f16 pairs
@group(0) @binding(1) var<storage, read> b: array<u32>; // f16 pairs
// Bindings 2 and 3, the optional bias and residual, addBias, addResidual and activate come from the includes
// that matmul_shape.ts epilogueParts names (bias.wgsl or no_bias.wgsl, ...).
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> aTile: array<f16, A_SIZE>; // op(A) rows row0.., columns k0..: [BM][BK], stride A_STRIDE
var<workgroup> bTile: array<f16, B_SIZE>; // op(B) rows k0.., columns col0..: [BK][BN], stride B_STRIDE
var<workgroup> cTile: array<f32, C_SIZE>; // one result matrix per subgroup: [NSG][TM][TN], row stride C_STRIDE

// The f16 at element i of a stored operand (the word holds two, the even element in the low half).
fn halfOf(word: u32, i: u32) -> f32 { return unpack2x16float(word)[i & 1u]; }

// Stored elements (row, col) and (row, col + 1) of a rows×cols row-major matrix at element `base` of `src`,
// zero outside the matrix; one word when the pair shares one (always, when cols is even).
fn storedPair(src: ptr<storage, array<u32>, read>, base: u32, row: u32, col: u32, rows: u32, cols: u32) -> vec2f {
  if (row >= rows || col >= cols) { return vec2f(0.0); }
  let i = base + row * cols + col;
  if (col + 1u < cols && (i & 1u) == 0u) { return unpack2x16float((*src)[i / 2u]); }
  var second = 0.0;
  if (col + 1u < cols) { second = halfOf((*src)[(i + 1u) / 2u], i + 1u); }
  return vec2f(halfOf((*src)[i / 2u], i), second);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  let baseA = wid.z * params.strideA;
  let baseB = wid.z * params.strideB;
  let sg = lid / SG;
  let sgRow = sg / SGN; // this subgroup's rows of C: row0 + sgRow·WM·TM ..
  let sgCol = sg % SGN;

  var acc = array<Acc, WM * WN>(); // result matrix (i, j) at acc[i * WN + j]
  for (var k0 = 0u; k0 < K; k0 += BK) {
    // One word pair per step, consecutive invocations on consecutive stored elements (coalesced reads).
    for (var w = lid; w < BM * BK / 2u; w += WG) {
      if (TRANS_A) { // stored K×M: a pair runs along m
        let kk = w / (BM / 2u);
        let r = 2u * (w % (BM / 2u));
        let x = storedPair(&a, baseA, k0 + kk, row0 + r, K, M);
        aTile[r * A_STRIDE + kk] = f16(x.x);
        aTile[(r + 1u) * A_STRIDE + kk] = f16(x.y);
      } else { // stored M×K: a pair runs along k
        let r = w / (BK / 2u);
        let kk = 2u * (w % (BK / 2u));
        let x = storedPair(&a, baseA, row0 + r, k0 + kk, M, K);
        aTile[r * A_STRIDE + kk] = f16(x.x);
        aTile[r * A_STRIDE + kk + 1u] = f16(x.y);
      }
    }
    for (var w = lid; w < BK * BN / 2u; w += WG) {
      if (TRANS_B) { // stored N×K: a pair runs along k
        let nn = w / (BK / 2u);
        let kk = 2u * (w % (BK / 2u));
        let x = storedPair(&b, baseB, col0 + nn, k0 + kk, N, K);
        bTile[kk * B_STRIDE + nn] = f16(x.x);
        bTile[(kk + 1u) * B_STRIDE + nn] = f16(x.y);
      } else { // stored K×N: a pair runs along n
        let kk = w / (BN / 2u);
        let nn = 2u * (w % (BN / 2u));
        let x = storedPair(&b, baseB, k0 + kk, col0 + nn, K, N);
        bTile[kk * B_STRIDE + nn] = f16(x.x);
        bTile[kk * B_STRIDE + nn + 1u] = f16(x.y);
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk += TK) {
      var left: array<Left, WM>;
      for (var i = 0u; i < WM; i++) {
        left[i] = subgroupMatrixLoad<Left, row_major>(&aTile, ((sgRow * WM + i) * TM) * A_STRIDE + kk, A_STRIDE);
      }
      for (var j = 0u; j < WN; j++) {
        let right = subgroupMatrixLoad<Right, row_major>(&bTile, kk * B_STRIDE + (sgCol * WN + j) * TN, B_STRIDE);
        for (var i = 0u; i < WM; i++) { acc[i * WN + j] = subgroupMatrixMultiplyAccumulate(left[i], right, acc[i * WN + j]); }
      }
    }
    workgroupBarrier(); // the tiles' readers are done before the next step overwrites them
  }

  let baseC = wid.z * M * N;
  for (var i = 0u; i < WM; i++) {
    for (var j = 0u; j < WN; j++) {
      subgroupMatrixStore<row_major>(&cTile, sg * TM * C_STRIDE, acc[i * WN + j], C_STRIDE);
      workgroupBarrier();
      // Every invocation writes its share of all subgroups' (i, j) matrices.
      for (var e = lid; e < NSG * TM * TN; e += WG) {
        let s = e / (TM * TN);
        let r = (e / TN) % TM;
        let col = e % TN;
        let m = row0 + ((s / SGN) * WM + i) * TM + r;
        let n = col0 + ((s % SGN) * WN + j) * TN + col;
        if (m < M && n < N) { c[baseC + m * N + n] = addResidual(activate(addBias(cTile[(s * TM + r) * C_STRIDE + col], n)), baseC + m * N + n); }
      }
      workgroupBarrier(); // cTile is read before the next matrix replaces it
    }
  }
}
