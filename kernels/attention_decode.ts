// Attention decode for generation: a few query rows against a long KV cache, split over key chunks
// (attention_decode.wgsl, or attention_decode_thread.wgsl on a CPU driver), then merged (attention_decode_reduce.wgsl); a cache of one chunk needs no merge.
import { ceilDiv, grid1d, KernelError, loadWgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import { attentionSource, MASK_PARAMS, maskParams, tileWork, type AttentionDims, type AttentionMask } from './attention_forward.ts';
import { bytesPerElement } from './dtype.ts';

/**
 * The decode kernels: 'workgroup', a workgroup a query row and key chunk, its keys across the threads and reduced in
 * workgroup memory (a GPU's); 'thread', a thread a query row and key chunk, without a barrier, loading quads of a
 * head (a CPU driver's, for head dims that are multiples of 4: on lavapipe each barrier costs every 8 invocations a
 * fiber switch, and a quad costs one load; 2-4x the workgroup variant there, bench/attention_decode.ts). The same
 * outputs, the same scores, weights and output sums; l is added in key order by the thread, in a tree by the
 * workgroup. The op picks by Gpu.onHostCpu and the head dim.
 */
export type DecodeVariant = 'workgroup' | 'thread';
export const DECODE_VARIANTS = { gpu: 'workgroup', cpu: 'thread' } as const satisfies Record<string, DecodeVariant>;

function decodeKernel(variant: DecodeVariant, storage: 'f32' | 'f16', hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'keyRange'];
  const name = `attentionDecode${variant === 'thread' ? 'Thread' : ''}${storage === 'f16' ? 'F16' : ''}`;
  return {
    name,
    ...attentionSource(variant === 'thread' ? 'attention_decode_thread.wgsl' : 'attention_decode.wgsl', inputs, hasKeyRange, storage, false, ['attention_decode_keys.wgsl']),
    inputs,
    outputs: ['partialOut', 'partialStats'],
    params: [['T', 'u32'], ['S', 'u32'], ['filled', 'u32'], ['H', 'u32'], ['KVH', 'u32'], ['chunks', 'u32'], ...(variant === 'thread' ? [['B', 'u32'] as const] : []), ['scale', 'f32'], ...MASK_PARAMS],
    constants: ['D', 'CHUNK', 'WG'],
  };
}

/** The decode kernels by variant, storage and padding (`keyRange`: the variant with that input). */
const decodeKey = (variant: DecodeVariant, storage: 'f32' | 'f16', hasKeyRange: boolean) => `${variant} ${storage}${hasKeyRange ? ' keyRange' : ''}`;
export const attentionDecodeKernels: Record<string, Kernel> = Object.fromEntries((['workgroup', 'thread'] as const).flatMap((variant) =>
  (['f32', 'f16'] as const).flatMap((storage) => [false, true].map((keys) => [decodeKey(variant, storage, keys), decodeKernel(variant, storage, keys)]))));

export const attentionDecodeReduceKernel: Kernel = {
  name: 'attentionDecodeReduce',
  source: loadWgsl(import.meta.url, 'attention_decode_reduce.wgsl'),
  inputs: ['partialOut', 'partialStats'],
  outputs: ['out'],
  params: [['rows', 'u32'], ['chunks', 'u32']],
  constants: ['D', 'WG'],
};

/** Threads a workgroup: the workgroup variant's share a row and chunk; the thread variant's take one each. */
const WG: Record<DecodeVariant, number> = { workgroup: 64, thread: 8 };
/** Keys per chunk by default: enough chunks to fill a GPU at cache lengths of a few thousand. */
export const DECODE_CHUNK = 256;

/** Bytes of workgroup memory a variant's workgroup takes for chunks of `chunk` keys. */
function decodeWorkgroupBytes(variant: DecodeVariant, chunk: number, D: number): number {
  return variant === 'thread' ? 4 * WG.thread * chunk : 4 * (chunk + D + WG.workgroup);
}

/** The chunk count for `filled` keys, checking that a chunk's scores fit the workgroup memory. */
export function decodeChunks(limits: DeviceLimits, filled: number, chunk: number, D: number, variant: DecodeVariant = 'workgroup'): number {
  const bytes = decodeWorkgroupBytes(variant, chunk, D);
  if (bytes > limits.maxComputeWorkgroupStorageSize) throw new KernelError(`attentionDecode (${variant}): a chunk of ${chunk} keys needs ${bytes} bytes of workgroup memory`);
  return Math.max(1, ceilDiv(filled, chunk));
}

/** dims.S: rows of the cache; filled: keys [0, filled) hold data; chunk: keys per workgroup (per thread in the thread variant). */
export function attentionDecodeCall(limits: DeviceLimits, dims: AttentionDims, filled: number, mask: AttentionMask, scale: number, chunk: number, storage: 'f32' | 'f16' = 'f32', variant: DecodeVariant = 'workgroup'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  if (variant === 'thread' && D % 4 !== 0) throw new KernelError(`attentionDecode (thread): head dim ${D} is not a multiple of 4 (it loads quads)`);
  const chunks = decodeChunks(limits, filled, chunk, D, variant);
  // A chunk computes only the keys its row sees (ignoring padding): tiles of one row by one key.
  const work = tileWork(T, filled, 1, 1, mask);
  const rows = B * H * T;
  return {
    kernel: attentionDecodeKernels[decodeKey(variant, storage, mask.hasKeyRange)],
    op: storage === 'f32' ? 'attentionDecode' : 'attentionDecodeF16', // the ledger's decode, whichever variant
    constants: { D, CHUNK: chunk, WG: WG[variant] },
    params: { T, S, filled, H, KVH, chunks, ...(variant === 'thread' ? { B } : {}), scale, ...maskParams(mask) },
    workgroups: variant === 'thread' ? grid1d(rows * chunks, WG.thread, limits) : [chunks, H * T, B],
    // q · k and p · v, 2·D each, per visible key, and with one chunk a division per output; each row reads those
    // keys' K and V rows itself.
    cost: {
      flops: 4 * D * B * H * work.entries + (chunks === 1 ? rows * D : 0),
      bytesRead: bytesPerElement(storage) * D * (rows * chunks + 2 * B * H * work.entries),
      bytesWritten: 4 * rows * chunks * (D + 2),
    },
  };
}

export function attentionDecodeReduceCall(limits: DeviceLimits, rows: number, chunks: number, D: number): KernelCall {
  return {
    kernel: attentionDecodeReduceKernel,
    constants: { D, WG: WG.workgroup },
    params: { rows, chunks },
    workgroups: grid1d(rows * D, WG.workgroup, limits),
    // Per output element and chunk: a weight (exp), two multiply-adds; partials read once.
    cost: { flops: 5 * rows * D * chunks, bytesRead: 4 * rows * chunks * (D + 2), bytesWritten: 4 * rows * D },
  };
}
