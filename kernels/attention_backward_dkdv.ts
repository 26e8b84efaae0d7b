// Attention backward: dK and dV per key tile, looping over the query heads that share its kv head (GQA without atomics).
import { ceilDiv, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';
import type { MatmulDeviceClass } from './matmul.ts';
import { ATTENTION_PARAMS, ATTENTION_TILE_TABLE, attentionSource, checkStorageBindings, maskParams, pickTiles, reloadedDims, streamedChunkDims, TILE_CONSTANTS, tileConstants, tileWork, type AttentionDims, type AttentionMask, type AttentionTiles } from './attention_forward.ts';

function dkdvKernel(hasKeyRange: boolean): Kernel {
  const inputs = ['q', 'k', 'v', 'dout', 'lse', 'delta', 'keyRange'];
  return {
    name: 'attentionBackwardDkDv',
    ...attentionSource('attention_backward_dkdv.wgsl', inputs, hasKeyRange),
    inputs,
    outputs: ['dk', 'dv'],
    params: ATTENTION_PARAMS,
    constants: [...TILE_CONSTANTS, 'DC'],
  };
}

export const attentionBackwardDkDvKernel = dkdvKernel(false);
export const attentionBackwardDkDvKeyRangeKernel = dkdvKernel(true);

/** device: the class whose entry of kernels/attention_tiles.json applies (matmul's device classes). */
export function dkdvTiles(limits: DeviceLimits, D: number, device: MatmulDeviceClass = 'other'): AttentionTiles {
  // K and V tiles, chunks of the Q and dO tiles, P and dS tiles, lse and delta of the query tile.
  const DC = streamedChunkDims(D);
  return pickTiles(limits, 'attentionBackwardDkDv', 'keys', D, ({ BR, BC }) => 2 * BC * D + 2 * BR * DC + 2 * BR * BC + 2 * BR, ATTENTION_TILE_TABLE[device].dkdv);
}

export function attentionBackwardDkDvCall(limits: DeviceLimits, dims: AttentionDims, mask: AttentionMask, scale: number, device: MatmulDeviceClass = 'other'): KernelCall {
  const { B, H, KVH, T, S, D } = dims;
  const kernel = mask.hasKeyRange ? attentionBackwardDkDvKeyRangeKernel : attentionBackwardDkDvKernel;
  checkStorageBindings(limits, kernel);
  const tiles = dkdvTiles(limits, D, device);
  const work = tileWork(T, S, tiles.BR, tiles.BC, mask);
  return {
    kernel,
    constants: { ...tileConstants(D, tiles), DC: streamedChunkDims(D) },
    params: { T, S, H, KVH, scale, ...maskParams(mask) },
    workgroups: [ceilDiv(S, tiles.BC), KVH, B],
    // Per computed entry: S = Q Kᵀ, dP = dO Vᵀ, dV += Pᵀ dO, dK += dSᵀ Q, 2·D each. K and V are read once;
    // each key tile reads the Q, dO, lse and delta rows of its computed query tiles, for every query head,
    // and Q's and dO's reloaded chunks again.
    cost: {
      flops: 8 * D * B * H * work.entries,
      bytesRead: 8 * B * KVH * S * D + 8 * B * H * work.rowsLoaded * (D + 1 + reloadedDims(D)),
      bytesWritten: 8 * B * KVH * S * D,
    },
  };
}
