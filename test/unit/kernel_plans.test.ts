// No GPU: kernel plans (tiles, workgroup sizes, grids, tensor-core variants) for a device this machine does not have.
// Every call takes the device limits as an argument; here they are an H100's, and WebGPU's guaranteed minimums
// (what a small device such as lavapipe's is closer to) show where the plan follows the device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tokenLogprobsCall } from '../../kernels/token_logprobs.ts';
import { SQUARED_SUM_SHAPES, squaredSumPlan } from '../../kernels/squared_sum.ts';
import { deviceLimitsOf, grid1d, LOGIT_ROW_THREADS, reductionWorkgroupSize, ROW_REDUCTION_SHAPES, rowGroup, rowWorkgroupSize, type DeviceLimits } from '../../kernels/spec.ts';
import { checkTile, chosenMatmulCall, DEFAULT_TILE, MATMUL_TABLE, matmulCall, type MatmulShape, type MatmulTable } from '../../kernels/matmul.ts';
import { MATMUL_VEC4_VARIANTS, matmulVec4Call, matmulVec4Unfit, matmulVec4WorkgroupBytes } from '../../kernels/matmul_vec4.ts';
import { checkStorageBindings, forwardTiles } from '../../kernels/attention_forward.ts';
import { attentionBackwardDkDvKernel, attentionBackwardDkDvKeyRangeKernel, dkdvTiles } from '../../kernels/attention_backward_dkdv.ts';
import { dqTiles } from '../../kernels/attention_backward_dq.ts';
import { decodeChunks } from '../../kernels/attention_decode.ts';
import { attentionForwardRowsCall, forwardChoice, ROWS_TILES } from '../../kernels/attention_forward_rows.ts';
import { attentionBackwardDqRowsCall, dqChoice } from '../../kernels/attention_backward_dq_rows.ts';
import { attentionBackwardDkDvRowsCall, dkdvChoice, DKDV_ROWS_TILES } from '../../kernels/attention_backward_dkdv_rows.ts';
import { tiledEntries, tiledFlopsPerDim } from '../../train/audit_model.ts';
import { softmaxWorkgroupSize } from '../../kernels/softmax.ts';
import { crossEntropyCall } from '../../kernels/cross_entropy.ts';
import { planTensorCore, tensorCoreDevice, tensorCoreDeviceUnsupported, tensorCoreShapes, tensorCoreVariant, type SubgroupMatrixDevice } from '../../kernels/attention_forward_tensor_core.ts';
import { matmulTensorCoreCall, matmulTensorCoreLayout, matmulTensorCoreVariant, planMatmulTensorCore } from '../../kernels/matmul_tensor_core.ts';
import { attentionBackwardTensorCoreCall, backwardLayout, planBackwardTensorCore, tensorCoreBackwardVariants } from '../../kernels/attention_backward_tensor_core.ts';

const H100: DeviceLimits = {
  maxStorageBufferBindingSize: 2147483644,
  maxBufferSize: 2 ** 40,
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupSizeY: 1024,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 16,
  minUniformBufferOffsetAlignment: 64,
  minStorageBufferOffsetAlignment: 64,
};

/** WebGPU's guaranteed limits: every device has at least these. */
const WEBGPU_DEFAULT: DeviceLimits = {
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 8,
  minUniformBufferOffsetAlignment: 256,
  minStorageBufferOffsetAlignment: 256,
};

const H100_MATRICES: SubgroupMatrixDevice = {
  features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']),
  subgroupMinSize: 32,
  subgroupMaxSize: 32,
  subgroupMatrixConfigs: [
    { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 },
    { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 },
    { componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 },
  ],
  limits: H100,
};

test('deviceLimitsOf takes the subset kernels read, and names what is missing', () => {
  assert.equal(deviceLimitsOf({ ...H100, maxBindGroups: 4 }), H100);
  const { maxComputeWorkgroupSizeZ: _, ...partial } = H100;
  assert.throws(() => deviceLimitsOf(partial), /maxComputeWorkgroupSizeZ/);
});

test('matmul tiles: a 48 KiB tile fits the H100, not the 16 KiB every device has', () => {
  const big = { tileM: 128, tileN: 128, tileK: 48, threadM: 8, threadN: 8 }; // 4·48·256 = 49152 bytes
  checkTile(H100, big);
  assert.throws(() => checkTile(WEBGPU_DEFAULT, big), /49152 bytes of workgroup memory exceed maxComputeWorkgroupStorageSize 16384/);
  const wide = { tileM: 64, tileN: 256, tileK: 8, threadM: 2, threadN: 8 }; // 32×32 = 1024 invocations
  checkTile(H100, wide);
  assert.throws(() => checkTile(WEBGPU_DEFAULT, wide), /1024 invocations exceed/);
  const s: MatmulShape = { batch: 1, M: 4096, N: 4096, K: 4096, strideA: 0, strideB: 0, transA: false, transB: true, hasBias: false, dtypeA: 'f32', dtypeB: 'bf16' };
  assert.equal(matmulCall(H100, s, DEFAULT_TILE).workgroups, [32, 32, 1]);
});

test('vec4 matmul variants: all fit an H100 at 4096^3 in every form; workgroup memory and 16-bit operands are refused with the reason', () => {
  const s: MatmulShape = { batch: 1, M: 4096, N: 4096, K: 4096, strideA: 0, strideB: 0, transA: false, transB: false, hasBias: false, dtypeA: 'f32', dtypeB: 'f32' };
  for (const [name, v] of Object.entries(MATMUL_VEC4_VARIANTS))
    for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]])
      assert.is(matmulVec4Unfit(H100, { ...s, transA, transB }, v), null, `${name} ${transA} ${transB}`);
  assert.equal(matmulVec4Call(H100, s, MATMUL_VEC4_VARIANTS['vec4 128x128x8/8x8']).workgroups, [32, 32, 1]);
  assert.equal(matmulVec4Call(H100, { ...s, M: 512, N: 2304, K: 768 }, MATMUL_VEC4_VARIANTS['vec4 64x64x16/8x8']).workgroups, [36, 8, 1]);
  assert.is(matmulVec4WorkgroupBytes(MATMUL_VEC4_VARIANTS['vec4 128x128x16/8x8']), 32768);
  assert.match(matmulVec4Unfit(WEBGPU_DEFAULT, s, MATMUL_VEC4_VARIANTS['vec4 128x128x16/8x8'])!, /32768 bytes of workgroup memory \(two staging buffers\) exceed maxComputeWorkgroupStorageSize 16384/);
  assert.match(matmulVec4Unfit(H100, s, { tileM: 128, tileN: 128, tileK: 32, threadM: 8, threadN: 8 })!, /65536 bytes .* exceed maxComputeWorkgroupStorageSize 49152/);
  assert.match(matmulVec4Unfit(H100, { ...s, transB: true, dtypeB: 'bf16' }, MATMUL_VEC4_VARIANTS['vec4 128x128x8/8x8'])!, /f32 only/);
  // The table picks a vec4 variant first where a bucket names one and it fits, else the bucket's tile.
  const table = { ...MATMUL_TABLE, nvidia: [{ maxMNK: null, tile: '128x128x16/8x8', vec4: 'vec4 128x128x8/8x8' }] } as MatmulTable;
  const sub = { subgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32 };
  assert.equal(chosenMatmulCall(table, 'nvidia', H100, sub, s).constants!.TILE_K, 8);
  assert.ok('B_FORMAT' in chosenMatmulCall(table, 'nvidia', H100, sub, { ...s, dtypeB: 'bf16' }).constants!, 'a bf16 B takes the tiled kernel');
});

test('reduction workgroup sizes follow the invocation and workgroup-memory limits', () => {
  assert.is(reductionWorkgroupSize(H100, 8), 256);
  assert.is(reductionWorkgroupSize(H100, 8, 0, 1024), 1024);
  assert.is(reductionWorkgroupSize(WEBGPU_DEFAULT, 8, 0, 1024), 256);
  assert.is(reductionWorkgroupSize(H100, 64, 0, 1024), 512); // 64 bytes a thread: 1024 threads need 64 KiB
  assert.is(softmaxWorkgroupSize(H100, 50304), 256);
  assert.is(softmaxWorkgroupSize(H100, 40), 64);
  assert.is(rowWorkgroupSize(H100, 4096, 4), 128);
  // Rows side by side fill a workgroup to 32 threads where a row takes fewer: the demo's 64 columns 16 rows of 2
  // threads; a row of 768 or 4096 keeps a workgroup to itself; never more rows than asked for (a power of two).
  const { gpu, cpu } = ROW_REDUCTION_SHAPES;
  assert.equal(rowGroup(H100, gpu, 64, 4), { threads: 32, rowThreads: 2, rows: 16 });
  assert.equal(rowGroup(H100, gpu, 768, 4), { threads: 32, rowThreads: 32, rows: 1 });
  assert.equal(rowGroup(H100, gpu, 4096, 8), { threads: 128, rowThreads: 128, rows: 1 });
  assert.equal(rowGroup(H100, gpu, 64, 4, 0, 3), { threads: 8, rowThreads: 2, rows: 4 });
  assert.equal(rowGroup(H100, gpu, 64, 4, 0, 1), { threads: 2, rowThreads: 2, rows: 1 });
  // A CPU driver's shape: a thread a row, whatever its length, 16 rows a workgroup however few are asked for (one pipeline).
  for (const cols of [7, 64, 768, 4096]) assert.equal(rowGroup(H100, cpu, cols, 8), { threads: 16, rowThreads: 1, rows: 16 });
  assert.equal(rowGroup(H100, cpu, 768, 4, 0, 3), { threads: 16, rowThreads: 1, rows: 16 });
  assert.equal(rowGroup(H100, gpu, 7, 4, 0, 3), { threads: 4, rowThreads: 1, rows: 4 }, 'on a GPU the rows asked for');
  // A row's logsumexp takes as few threads as its vocabulary needs: one for the demo's 19 tokens, 256 for Pythia's.
  assert.is(crossEntropyCall(H100, 320, 19, -100, true).constants!.WG, 1);
  assert.is(crossEntropyCall(H100, 320, 50304, -100, true).constants!.WG, 256);
  assert.is(tokenLogprobsCall(H100, 16, 20, 19).constants!.WG, 1);
  assert.is(tokenLogprobsCall(H100, 16, 20, 50304, { first: 0, rows: 512 }).constants!.WG, 16);
  // A CPU driver's cap: 8 threads a row (one fiber on lavapipe), as few as the vocabulary needs below it.
  assert.is(crossEntropyCall(H100, 320, 50304, -100, true, LOGIT_ROW_THREADS.cpu).constants!.WG, 8);
  assert.is(tokenLogprobsCall(H100, 16, 20, 19, undefined, LOGIT_ROW_THREADS.cpu).constants!.WG, 1);
  // The gradient norm's partial sums: 256 threads of 16 elements on a GPU (4096 a group), 8 of 256 on a CPU driver (2048).
  assert.equal(squaredSumPlan(H100, 1 << 20, SQUARED_SUM_SHAPES.gpu), { wg: 256, groups: 256, chunk: 4096 });
  assert.equal(squaredSumPlan(H100, 1 << 20, SQUARED_SUM_SHAPES.cpu), { wg: 8, groups: 512, chunk: 2048 });
  assert.equal(squaredSumPlan(H100, 100, SQUARED_SUM_SHAPES.cpu), { wg: 8, groups: 1, chunk: 100 });
  assert.equal(crossEntropyCall(H100, 100000, 50304, -100, true).workgroups, [50000, 2]);
});

test('grid1d folds a long grid into y at the per-dimension limit', () => {
  assert.equal(grid1d(2 ** 26, 256, H100), [52429, 5]); // 262144 groups
  assert.equal(grid1d(1000, 256, H100), [4, 1]);
  assert.equal(grid1d(65535 * 256, 256, H100), [65535, 1]);
  assert.equal(grid1d(65536 * 256, 256, H100), [32768, 2]);
});

test('attention tiles: larger on the H100 than in 16 KiB, and the storage-buffer limit checked', () => {
  assert.equal(forwardTiles(H100, 64), { BR: 32, BC: 32 });
  assert.equal(forwardTiles(WEBGPU_DEFAULT, 64), { BR: 32, BC: 16 }); // 32×32 needs 20864 bytes, 32×16 14720
  // D = 256: 16 held rows at most (accumulators); 16×32 needs 51392 bytes, 16×16 33984.
  assert.equal(forwardTiles(H100, 256), { BR: 16, BC: 16 });
  assert.equal(dqTiles(H100, 128), { BR: 16, BC: 16 }); // 32×16 needs 51456 bytes
  assert.equal(dkdvTiles(H100, 64), { BR: 32, BC: 32 }); // 41216 bytes
  assert.equal(dkdvTiles(WEBGPU_DEFAULT, 64), { BR: 8, BC: 16 }); // of equal area, more keys held
  // kernels/attention_tiles.json: lavapipe's backward on 4 × 4 threads where its accumulators fit (D <= 64);
  // NVIDIA's and other devices' plans unchanged.
  assert.equal(dkdvTiles(H100, 64, 'lavapipe'), { GRID: 4, BR: 16, BC: 16 });
  assert.equal(dqTiles(H100, 64, 'lavapipe'), { GRID: 4, BR: 16, BC: 16 });
  assert.equal(dkdvTiles(WEBGPU_DEFAULT, 64, 'lavapipe'), { BR: 8, BC: 16 }); // 16×16 needs 18560 bytes
  assert.equal(dqTiles(H100, 128, 'lavapipe'), { BR: 16, BC: 16 }); // 4 × 32 accumulators: the 8 × 8 plan
  assert.equal(forwardTiles(H100, 64, 'lavapipe'), { BR: 32, BC: 32 });
  assert.equal(dkdvTiles(H100, 64, 'nvidia'), { BR: 32, BC: 32 });
  checkStorageBindings(H100, attentionBackwardDkDvKeyRangeKernel); // 7 inputs and 2 outputs
  assert.throws(() => checkStorageBindings(WEBGPU_DEFAULT, attentionBackwardDkDvKeyRangeKernel), /9 storage buffers exceed/);
  checkStorageBindings(WEBGPU_DEFAULT, attentionBackwardDkDvKernel); // without padding keyRange is absent: 8
  assert.is(decodeChunks(H100, 4096, 8192, 64), 1);
  assert.throws(() => decodeChunks(WEBGPU_DEFAULT, 4096, 8192, 64), /workgroup memory/);
});

test('attention forward, dQ and dK/dV choice: the rows kernels where lavapipe\'s table lists them and they fit, else the tiled ones', () => {
  const eight = { subgroups: true, subgroupMinSize: 8, subgroupMaxSize: 8 };
  assert.equal(forwardChoice(WEBGPU_DEFAULT, eight, 64, 'lavapipe'), { kernel: 'rows', tiles: ROWS_TILES });
  assert.equal(forwardChoice(WEBGPU_DEFAULT, eight, 12, 'lavapipe').kernel, 'rows');
  assert.equal(forwardChoice(H100, eight, 64, 'nvidia'), { kernel: 'tiled', tiles: forwardTiles(H100, 64, 'nvidia') });
  assert.match(forwardChoice(WEBGPU_DEFAULT, eight, 80, 'lavapipe').reason ?? '', /head dim 80 is not a multiple of 4 up to 64/);
  assert.match(forwardChoice(WEBGPU_DEFAULT, eight, 30, 'lavapipe').reason ?? '', /head dim 30/);
  assert.match(forwardChoice(H100, { subgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32 }, 64, 'lavapipe').reason ?? '', /exactly 8/);
  assert.equal(forwardChoice(H100, { subgroups: false, subgroupMinSize: 8, subgroupMaxSize: 8 }, 64, 'lavapipe').tiles, { BR: 32, BC: 32 });
  // Its cost: Q Kᵀ over 16 × 32 tiles and P V over 16 × 4, as the analytic audit counts them (train/audit_model.ts tiledEntries).
  const dims = { B: 2, H: 4, KVH: 2, T: 77, S: 77, D: 64 };
  for (const window of [0, 20]) {
    const call = attentionForwardRowsCall(WEBGPU_DEFAULT, eight, dims, { causal: true, window, positionOffset: 0, hasKeyRange: false }, 0.125);
    const W = window || null;
    assert.is(call.cost.flops, 2 * 64 * 8 * (tiledEntries(77, { BR: 16, BC: 32 }, W) + tiledEntries(77, { BR: 16, BC: 4 }, W)));
    assert.equal(call.workgroups, [5, 4, 2]);
    assert.equal(call.constants, { D: 64, SLOTS: 2 });
  }
  assert.throws(() => attentionForwardRowsCall(WEBGPU_DEFAULT, eight, { ...dims, D: 128 }, { causal: false, window: 0, positionOffset: 0, hasKeyRange: false }, 1), /head dim 128/);
  // dQ likewise (S and dP over 16 × 32, dS K over 16 × 4), the tiled dQ's tiles where it does not fit.
  assert.equal(dqChoice(WEBGPU_DEFAULT, eight, 64, 'lavapipe'), { kernel: 'rows', tiles: ROWS_TILES });
  assert.equal(dqChoice(H100, eight, 80, 'lavapipe').tiles, dqTiles(H100, 80, 'lavapipe'));
  assert.equal(dqChoice(H100, eight, 64, 'other').kernel, 'tiled');
  const mask = { causal: true, window: 0, positionOffset: 0, hasKeyRange: false };
  assert.is(attentionBackwardDqRowsCall(WEBGPU_DEFAULT, eight, dims, mask, 1).cost.flops, 64 * 8 * tiledFlopsPerDim(77, ROWS_TILES, null, 6));
  assert.is(attentionForwardRowsCall(WEBGPU_DEFAULT, eight, dims, mask, 1).cost.flops, 64 * 8 * tiledFlopsPerDim(77, ROWS_TILES, null, 4));
  // dK/dV: Sᵀ and dPᵀ over 32 rows × 16 keys, dV and dK over 4 × 16; 16 keys per workgroup; with padding 9 storage buffers.
  assert.equal(dkdvChoice(WEBGPU_DEFAULT, eight, 64, 'lavapipe'), { kernel: 'rows', tiles: DKDV_ROWS_TILES });
  assert.equal(dkdvChoice(H100, eight, 80, 'lavapipe').tiles, dkdvTiles(H100, 80, 'lavapipe'));
  const dkdv = attentionBackwardDkDvRowsCall(H100, eight, dims, mask, 1);
  assert.is(dkdv.cost.flops, 64 * 8 * tiledFlopsPerDim(77, DKDV_ROWS_TILES, null, 8, 4));
  assert.equal(dkdv.workgroups, [5, 2, 2]);
  assert.throws(() => attentionBackwardDkDvRowsCall(WEBGPU_DEFAULT, eight, dims, { ...mask, hasKeyRange: true }, 1), /9 storage buffers exceed/);
});

test('tensor-core plan for an H100: its shapes, the largest first, and the variant at head dim 64', () => {
  assert.is(tensorCoreDeviceUnsupported(H100_MATRICES), null);
  assert.equal(tensorCoreShapes(H100_MATRICES), [{ M: 16, N: 16, K: 16 }, { M: 16, N: 8, K: 16 }]);
  assert.equal(tensorCoreVariant(H100_MATRICES, 64).variant, { shape: { M: 16, N: 16, K: 16 }, subgroupSize: 32, subgroups: 4, BC: 64, D: 64 });
  assert.equal(tensorCoreDevice(H100_MATRICES), { subgroupSize: 32, maxWorkgroupBytes: 49152, maxInvocations: 1024 });
  assert.is(planTensorCore(128, { M: 16, N: 16, K: 16 }, tensorCoreDevice(H100_MATRICES)).variant?.subgroups, 2);
  const lavapipeLike: SubgroupMatrixDevice = { features: new Set(['shader-f16']), subgroupMinSize: 4, subgroupMaxSize: 16, subgroupMatrixConfigs: [], limits: WEBGPU_DEFAULT };
  assert.match(tensorCoreDeviceUnsupported(lavapipeLike)!, /lacks 'chromium-experimental-subgroup-matrix'/);
  assert.match(tensorCoreVariant(lavapipeLike, 64).reason!, /lacks/);
});

test('tensor-core attention backward plans for an H100: dK/dV and dQ tiles in 48 KiB at every head dim, grids, refusals with the reason', () => {
  const shape = { M: 16, N: 16, K: 16 };
  const { dkdv, dq } = tensorCoreBackwardVariants(H100_MATRICES, 64);
  // dK/dV: 64 keys held (4 subgroups of 16), 32 query rows streamed: 48512 bytes; dQ: 64 rows held, 32 keys streamed.
  assert.equal(dkdv, { kind: 'dkdv', shape, subgroupSize: 32, subgroups: 4, streamed: 32, D: 64 });
  assert.equal(dq, { kind: 'dq', shape, subgroupSize: 32, subgroups: 4, streamed: 32, D: 64 });
  const dims = { B: 4, H: 16, KVH: 16, T: 2048, S: 2048, D: 64 };
  const mask = { causal: true, window: 0, positionOffset: 0, hasKeyRange: false };
  assert.equal(attentionBackwardTensorCoreCall(dims, mask, 0.125, dkdv!).workgroups, [32, 16, 4]);
  assert.equal(attentionBackwardTensorCoreCall(dims, mask, 0.125, dq!).workgroups, [32, 16, 4]);
  const device = tensorCoreDevice(H100_MATRICES);
  for (const D of [2, 12, 16, 64, 80, 128, 256]) {
    for (const kind of ['dkdv', 'dq'] as const) {
      const { variant, reason } = planBackwardTensorCore(kind, D, shape, device);
      assert.ok(variant, `${kind} D${D}: ${reason}`);
      const L = backwardLayout(variant!);
      assert.ok(L.bytes <= 49152 && L.DP >= D && L.DP % 16 === 0 && Number.isInteger(L.SHARE), `${kind} D${D}: ${L.bytes} bytes, DP ${L.DP}`);
    }
  }
  assert.is(planBackwardTensorCore('dkdv', 128, shape, device).variant?.subgroups, 2);
  assert.equal(tensorCoreBackwardVariants(H100_MATRICES, 64, { M: 16, N: 8, K: 16 }).dq?.shape, { M: 16, N: 8, K: 16 });
  assert.match(tensorCoreBackwardVariants(H100_MATRICES, 64, { M: 8, N: 8, K: 8 }).reason!, /not among this device's f16 -> f32 shapes/);
  assert.match(planBackwardTensorCore('dq', 63, shape, device).reason!, /not even/);
  assert.match(planBackwardTensorCore('dq', 264, shape, device).reason!, /> 256/);
  assert.match(planBackwardTensorCore('dkdv', 256, shape, { ...device, maxWorkgroupBytes: 16384 }).reason!, /no dkdv tile at head dim 256 fits 16384 bytes/);
  const lavapipeLike: SubgroupMatrixDevice = { features: new Set(['shader-f16']), subgroupMinSize: 4, subgroupMaxSize: 16, subgroupMatrixConfigs: [], limits: WEBGPU_DEFAULT };
  assert.match(tensorCoreBackwardVariants(lavapipeLike, 64).reason!, /lacks 'chromium-experimental-subgroup-matrix'/);
});

test('tensor-core matmul plan for an H100: 128x128 tiles at 4096^3 in 48 KiB, smaller tiles for small products, refusals with the reason', () => {
  const s: MatmulShape = { batch: 1, M: 4096, N: 4096, K: 4096, strideA: 0, strideB: 0, transA: true, transB: false, hasBias: false, dtypeA: 'f16', dtypeB: 'f16' };
  const { variant } = matmulTensorCoreVariant(H100_MATRICES, s);
  assert.equal(variant, { shape: { M: 16, N: 16, K: 16 }, subgroupSize: 32, subgroupRows: 2, subgroupCols: 2, matrixRows: 4, matrixCols: 4 });
  const L = matmulTensorCoreLayout(variant!);
  assert.equal([L.BM, L.BN, L.BK, L.WG], [128, 128, 32, 128]);
  assert.ok(L.bytes <= 32768, `${L.bytes} bytes: within lavapipe's 32 KiB too`);
  assert.equal(matmulTensorCoreCall(s, variant!).workgroups, [32, 32, 1]);
  assert.equal(matmulTensorCoreVariant(H100_MATRICES, s, { M: 16, N: 8, K: 16 }).variant?.shape, { M: 16, N: 8, K: 16 });
  assert.match(matmulTensorCoreVariant(H100_MATRICES, s, { M: 8, N: 8, K: 8 }).reason!, /not among this device's f16 -> f32 shapes/);
  // A 64-row product gets 64x64 tiles (4 subgroups of 2x2 matrices), and so does 4096^3 in WebGPU's 16 KiB.
  assert.is(matmulTensorCoreLayout(matmulTensorCoreVariant(H100_MATRICES, { ...s, M: 64, N: 100 }).variant!).BM, 64);
  assert.is(matmulTensorCoreLayout(planMatmulTensorCore(4096, 4096, { M: 16, N: 16, K: 16 }, { subgroupSize: 32, maxWorkgroupBytes: 16384, maxInvocations: 256 }).variant!).BM, 64);
  assert.match(planMatmulTensorCore(4096, 4096, { M: 16, N: 16, K: 16 }, { subgroupSize: 32, maxWorkgroupBytes: 2048, maxInvocations: 256 }).reason!, /no tile fits 2048 bytes/);
  assert.match(planMatmulTensorCore(64, 64, { M: 16, N: 4, K: 16 }, tensorCoreDevice(H100_MATRICES)).reason!, /rows of 16 bytes/);
  assert.match(matmulTensorCoreVariant(H100_MATRICES, { ...s, dtypeA: 'bf16' }).reason!, /operands are bf16 and f16: subgroup matrices take f16 operands/);
  assert.match(matmulTensorCoreVariant(H100_MATRICES, { ...s, dtypeB: 'f32' }).reason!, /f16 operands/);
  assert.match(matmulTensorCoreVariant(H100_MATRICES, { ...s, M: 65535 * 128 + 1 }).reason!, /exceeds maxComputeWorkgroupsPerDimension/);
  const lavapipeLike: SubgroupMatrixDevice = { features: new Set(['shader-f16']), subgroupMinSize: 4, subgroupMaxSize: 16, subgroupMatrixConfigs: [], limits: WEBGPU_DEFAULT };
  assert.match(matmulTensorCoreVariant(lavapipeLike, s).reason!, /lacks 'chromium-experimental-subgroup-matrix'/);
});

test.run();
