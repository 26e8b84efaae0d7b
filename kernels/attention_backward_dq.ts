// Attention backward: dQ per query tile, over the key tiles its rows see.
import { ceilDiv, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';
import type { MatmulDeviceClass } from './matmul.ts';
import { ATTENTION_PARAMS, ATTENTION_TILE_TABLE, attentionSource, checkStorageBindings, maskParams, pickTiles, reloadedDims, streamedChunkDims, TILE_CONSTANTS, tileConstants, tileWork, type AttentionDims, type AttentionMask, type AttentionTiles } from './attention_forward.ts';

function dqKernel(hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'dout', 'lse', 'delta', 'keyRange'];
  return {
    name: 'attentionBackwardDq',
    ...attentionSource('attention_backward_dq.wgsl', inputs, hasKeyRange),
    inputs,
    outputs: ['dq'],
    params: ATTENTION_PARAMS,
    constants: [...TILE_CONSTANTS, 'DC'],
  };
}

export const attentionBackwardDqKernel = dqKernel(false);
export const attentionBackwardDqKeyRangeKernel = dqKernel(true);

/** device: the class whose entry of kernels/attention_tiles.json applies (matmul's device classes). */
export function dqTiles(limits: DeviceLimits, D: number, device: MatmulDeviceClass = 'other'): AttentionTiles {
  // Q and dO tiles, chunks of the K and V tiles, the dS tile, lse and delta.
  const DC = streamedChunkDims(D);
  return pickTiles(limits, 'attentionBackwardDq', 'rows', D, ({ BR, BC }) => 2 * BR * D + 2 * BC * DC + BR * BC + 2 * BR, ATTENTION_TILE_TABLE[device].dq);
}

export function attentionBackwardDqCall(limits: DeviceLimits, dims: AttentionDims, mask: AttentionMask, scale: number, device: MatmulDeviceClass = 'other'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const kernel = mask.hasKeyRange ? attentionBackwardDqKeyRangeKernel : attentionBackwardDqKernel;
  checkStorageBindings(limits, kernel);
  const tiles = dqTiles(limits, D, device);
  const work = tileWork(T, S, tiles.BR, tiles.BC, mask);
  return {
    kernel,
    constants: { ...tileConstants(D, tiles), DC: streamedChunkDims(D) },
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: [ceilDiv(T, tiles.BR), H, B],
    // Per computed entry: S = Q Kᵀ, dP = dO Vᵀ, dQ += dS K, 2·D each. Q, dO, lse and delta are read once;
    // each query tile reads the K and V rows of its computed key tiles, and K's reloaded chunks again.
    cost: {
      flops: 6 * D * B * H * work.entries,
      bytesRead: 8 * B * H * T * (D + 1) + 4 * B * H * work.keysLoaded * (2 * D + reloadedDims(D)),
      bytesWritten: 4 * B * H * T * D,
    },
  };
}
