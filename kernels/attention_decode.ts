// Attention decode for generation: a few query rows against a long KV cache, split over key chunks
// (attention_decode.wgsl), then merged (attention_decode_reduce.wgsl); a cache of one chunk needs no merge.
import { ceilDiv, grid1d, KernelError, loadWgsl, type DeviceLimits, type Kernel, type KernelCall } from './spec.ts';
import { attentionSource, MASK_PARAMS, maskParams, tileWork, type AttentionDims, type AttentionMask } from './attention_forward.ts';
import { bytesPerElement } from './dtype.ts';

function decodeKernel(storage: 'f32' | 'f16', hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'keyRange'];
  return {
    name: storage === 'f32' ? 'attentionDecode' : 'attentionDecodeF16',
    ...attentionSource('attention_decode.wgsl', inputs, hasKeyRange, storage, false),
    inputs,
    outputs: ['partialOut', 'partialStats'],
    params: [['T', 'u32'], ['S', 'u32'], ['filled', 'u32'], ['H', 'u32'], ['KVH', 'u32'], ['chunks', 'u32'], ['scale', 'f32'], ...MASK_PARAMS],
    constants: ['D', 'CHUNK', 'WG'],
  };
}

export const attentionDecodeKernel = decodeKernel('f32', false);
export const attentionDecodeKeyRangeKernel = decodeKernel('f32', true);
export const attentionDecodeF16Kernel = decodeKernel('f16', false);
export const attentionDecodeF16KeyRangeKernel = decodeKernel('f16', true);

export const attentionDecodeReduceKernel: Kernel = {
  name: 'attentionDecodeReduce',
  source: loadWgsl(import.meta.url, 'attention_decode_reduce.wgsl'),
  inputs: ['partialOut', 'partialStats'],
  outputs: ['out'],
  params: [['rows', 'u32'], ['chunks', 'u32']],
  constants: ['D', 'WG'],
};

const WG = 64;
/** Keys per chunk by default: enough chunks to fill a GPU at cache lengths of a few thousand. */
export const DECODE_CHUNK = 256;

/** The chunk count for `filled` keys, checking that a chunk's scores fit the workgroup memory. */
export function decodeChunks(limits: DeviceLimits, filled: number, chunk: number, D: number): number {
  const bytes = 4 * (chunk + D + WG);
  if (bytes > limits.maxComputeWorkgroupStorageSize) throw new KernelError(`attentionDecode: a chunk of ${chunk} keys needs ${bytes} bytes of workgroup memory`);
  return Math.max(1, ceilDiv(filled, chunk));
}

/** dims.S: rows of the cache; filled: keys [0, filled) hold data; chunk: keys per workgroup. */
export function attentionDecodeCall(limits: DeviceLimits, dims: AttentionDims, filled: number, mask: AttentionMask, scale: number, chunk: number, storage: 'f32' | 'f16' = 'f32'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const chunks = decodeChunks(limits, filled, chunk, D);
  // A chunk computes only the keys its row sees (ignoring padding): tiles of one row by one key.
  const work = tileWork(T, filled, 1, 1, mask);
  const rows = B * H * T;
  return {
    kernel: storage === 'f32'
      ? (mask.hasKeyRange ? attentionDecodeKeyRangeKernel : attentionDecodeKernel)
      : (mask.hasKeyRange ? attentionDecodeF16KeyRangeKernel : attentionDecodeF16Kernel),
    constants: { D, CHUNK: chunk, WG },
    params: { T, S, filled, H, KVH, chunks, scale, ...maskParams(mask) },
    workgroups: [chunks, H * T, B],
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
    constants: { D, WG },
    params: { rows, chunks },
    workgroups: grid1d(rows * D, WG, limits),
    // Per output element and chunk: a weight (exp), two multiply-adds; partials read once.
    cost: { flops: 5 * rows * D * chunks, bytesRead: 4 * rows * chunks * (D + 2), bytesWritten: 4 * rows * D },
  };
}
