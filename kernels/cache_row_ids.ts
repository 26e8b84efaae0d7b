// The ids of a KV cache's rows as they move to a new cache (a compaction, a join): built on the device from a pair a
// moved row, so that a join costs the host O(rows), not O(rows x heads x columns).
import { ELEMENTWISE_SHAPES, elementwiseLaunch, KernelError, wgsl, type DeviceLimits, type ElementwiseShape, type Kernel, type KernelCall } from './spec.ts';

export const cacheRowIdsKernel: Kernel = {
  name: 'cacheRowIds',
  source: wgsl(import.meta.url, 'cache_row_ids.wgsl', { includes: ['elementwise_main.wgsl'] }),
  inputs: ['sources'],
  outputs: ['ids'],
  params: [['n', 'u32'], ['perThread', 'u32'], ['heads', 'u32'], ['columns', 'u32'], ['length', 'u32'], ['srcColumns', 'u32'], ['srcFilled', 'u32'], ['at', 'u32'], ['count', 'u32']],
  constants: ['WG'],
};

/**
 * One part's moves into a new cache of `rows` rows, `heads` heads and `columns` columns filled up to `length`: its
 * `count` rows become new rows [at, at + count), each taking a source row of a cache of `srcColumns` columns filled
 * up to `srcFilled`, with the padding given beside it in `sources` (i32 [count, 2]).
 */
export interface CacheRowMoves { rows: number; heads: number; columns: number; length: number; srcColumns: number; srcFilled: number; at: number; count: number }

/** ids i32 [rows * heads * columns] from sources i32 [count, 2] (cache_row_ids.wgsl). */
export function cacheRowIdsCall(limits: DeviceLimits, m: CacheRowMoves, shape: ElementwiseShape = ELEMENTWISE_SHAPES.gpu): KernelCall {
  const { rows, heads, columns, length, srcColumns, srcFilled, at, count } = m;
  const whole = (x: number) => Number.isSafeInteger(x) && x >= 0;
  if (![rows, heads, columns, length, srcColumns, srcFilled, at, count].every(whole) || heads === 0 || columns === 0 || length > columns || srcFilled > srcColumns || at + count > rows)
    throw new KernelError(`cacheRowIds: moves ${JSON.stringify(m)} do not fit (length <= columns, srcFilled <= srcColumns, at + count <= rows)`);
  const n = rows * heads * columns;
  const { constants, perThread, workgroups } = elementwiseLaunch(limits, n, shape);
  return {
    kernel: cacheRowIdsKernel, constants, params: { n, perThread, heads, columns, length, srcColumns, srcFilled, at, count }, workgroups,
    cost: { flops: 0, bytesRead: 8 * count, bytesWritten: 4 * n },
  };
}
