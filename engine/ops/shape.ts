// Shape ops on the tape: reshape (a view), permute, narrow and split (strided copies), and concatenation's inverse;
// off the tape, writeSlice and gatherRows (a KV cache's writes and its rows moved).
import { record } from '../autodiff.ts';
import { GpuError } from '../gpu.ts';
import { deviceLimits, elementwiseShape, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { cacheRowIdsCall, type CacheRowMoves } from '../../kernels/cache_row_ids.ts';
import { gatherRowsCall } from '../../kernels/embedding.ts';
import { stridedCopyCall } from '../../kernels/strided_copy.ts';
import { fill } from './elementwise.ts';

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let k = shape.length - 1; k >= 0; k--) { s[k] = acc; acc *= shape[k]; }
  return s;
}

/** Pads dims and strides on the left to rank 4 (size-1 dims with stride 0). */
function rank4(dims: number[], strides: number[], op: string): [number[], number[]] {
  if (dims.length > 4) throw new GpuError(`${op}: rank ${dims.length} > 4; reshape first`);
  while (dims.length < 4) { dims = [1, ...dims]; strides = [0, ...strides]; }
  return [dims, strides];
}

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const out = x.reshape(shape);
  record('reshape', [x], [out], [], ([g]) => [g!.reshape(x.shape)]);
  return out;
}

/**
 * out = x with dims reordered: out.shape[k] = x.shape[perm[k]]. Where the dims longer than 1 keep their order
 * (e.g. [B, H, 1, D] to [B, 1, H, D] in decoding) the elements do too, and out is a reshape of x: no copy.
 */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) throw new GpuError(`permute: ${JSON.stringify(perm)} is not a permutation of ${x.rank} dims`);
  const outShape = perm.map((p) => x.shape[p]);
  const moved = perm.filter((p) => x.shape[p] !== 1);
  if (moved.every((p, i) => i === 0 || p > moved[i - 1]!)) return reshape(x, outShape);
  const xs = contiguousStrides(x.shape);
  const out = Tensor.empty(outShape, x.dtype, 'permute');
  const [dims, strides] = rank4(outShape, perm.map((p) => xs[p]), 'permute');
  launch(stridedCopyCall(deviceLimits(), 'gather', dims, strides, 0, 'permute', elementwiseShape()), [x], [out]);
  const inverse = perm.map((_, k) => perm.indexOf(k));
  record('permute', [x], [out], [], ([g]) => [permute(g!, inverse)]);
  return out;
}

/** The slice [start, start + length) of x along dim (all of x, e.g. the last of one position: a reshape, no copy). */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  if (dim < 0 || dim >= x.rank || start < 0 || length < 0 || start + length > x.shape[dim])
    throw new GpuError(`narrow: [${start}, ${start + length}) along dim ${dim} of ${shapeString(x.shape)}`);
  if (length === x.shape[dim]) return reshape(x, x.shape);
  const outShape = x.shape.map((d, k) => (k === dim ? length : d));
  const xs = contiguousStrides(x.shape);
  const out = Tensor.empty(outShape, x.dtype, 'narrow');
  const [dims, strides] = rank4(outShape, xs, 'narrow');
  launch(stridedCopyCall(deviceLimits(), 'gather', dims, strides, start * xs[dim], 'narrow', elementwiseShape()), [x], [out]);
  // forward read a window of x, so dx is zero outside it and g inside it.
  record('narrow', [x], [out], [], ([g]) => {
    const dx = fill(x.shape, 0);
    launch(stridedCopyCall(deviceLimits(), 'scatter', dims, strides, start * xs[dim], 'narrowBackward', elementwiseShape()), [g!], [dx]);
    return [dx];
  });
  return out;
}

/**
 * Slices of x along dim, of the given sizes (which add up to x.shape[dim]), each with its dims reordered by perm:
 * permute(narrow(x, dim, start, size), perm) for each, one gather apiece (e.g. q, k, v [B, H, T, D] from a fused
 * [B, T, H, 3D] projection). The slices tile x, so the backward scatters their gradients straight into one dx:
 * no zero fill, no fan-out adds and no permute, which narrow's backward and the composition would cost.
 */
export function split(x: Tensor, dim: number, sizes: readonly number[], perm: readonly number[] = x.shape.map((_, k) => k)): Tensor[] {
  if (dim < 0 || dim >= x.rank || sizes.some((n) => !Number.isInteger(n) || n < 1) || sizes.reduce((a, b) => a + b, 0) !== x.shape[dim])
    throw new GpuError(`split: sizes ${JSON.stringify(sizes)} along dim ${dim} of ${shapeString(x.shape)}`);
  if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) throw new GpuError(`split: ${JSON.stringify(perm)} is not a permutation of ${x.rank} dims`);
  const xs = contiguousStrides(x.shape);
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  // Slice i as a strided view of x: its dims in output order, x's strides, and where it starts.
  const views = sizes.map((size, i) => {
    const sliceShape = x.shape.map((d, k) => (k === dim ? size : d));
    const [dims, strides] = rank4(perm.map((p) => sliceShape[p]), perm.map((p) => xs[p]), 'split');
    return { shape: perm.map((p) => sliceShape[p]), dims, strides, offset: starts[i] * xs[dim] };
  });
  const outs = views.map((v) => {
    const out = Tensor.empty(v.shape, x.dtype, 'split');
    launch(stridedCopyCall(deviceLimits(), 'gather', v.dims, v.strides, v.offset, 'split', elementwiseShape()), [x], [out]);
    return out;
  });
  // forward read disjoint windows that cover x, so dx is each slice's gradient in its window (zero where none flowed).
  record('split', [x], outs, [], (gs) => {
    const dx = gs.every((g) => g) ? Tensor.empty(x.shape, 'f32', 'splitBackward') : fill(x.shape, 0);
    views.forEach((v, i) => { if (gs[i]) launch(stridedCopyCall(deviceLimits(), 'scatter', v.dims, v.strides, v.offset, 'splitBackward', elementwiseShape()), [gs[i]], [dx]); });
    return [dx];
  });
  return outs;
}

/** Writes src into dst's slice [start, start + src.shape[dim]) along dim, in place and off the tape (e.g. a KV cache). */
export function writeSlice(dst: Tensor, src: Tensor, dim: number, start: number): void {
  const length = src.shape[dim];
  if (src.rank !== dst.rank || src.shape.some((d, k) => k !== dim && d !== dst.shape[k]) || start < 0 || start + length > dst.shape[dim])
    throw new GpuError(`writeSlice: ${shapeString(src.shape)} into ${shapeString(dst.shape)} at ${start} along dim ${dim}`);
  const [dims, strides] = rank4([...src.shape], contiguousStrides(dst.shape), 'writeSlice');
  launch(stridedCopyCall(deviceLimits(), 'scatter', dims, strides, start * contiguousStrides(dst.shape)[dim], 'writeSlice', elementwiseShape()), [src], [dst]);
}

/**
 * For each pair, dst's rows of `cols` elements gathered from x's (both f32, as [-1, cols]): row i = x's row ids[i]
 * (ids i32, on the device), or for a negative id, or one past x's rows, 0 (zeroOthers) or as it was; in place, off the
 * tape, one dispatch a pair (the embedding's gather, x's elements as a table of rows). `moved`: how many ids name a row
 * (the ledger's bytes). KVCache.joined moves every layer's keys and values with one list of ids (cacheRowIds).
 */
export function gatherRows(pairs: readonly { dst: Tensor; x: Tensor }[], ids: Tensor, cols: number, moved: number, zeroOthers: boolean): void {
  for (const { dst, x } of pairs) {
    const what = `gatherRows(dst ${dst.dtype} ${shapeString(dst.shape)}, x ${x.dtype} ${shapeString(x.shape)}, ids ${ids.dtype} ${shapeString(ids.shape)}, cols ${cols})`;
    if (dst.dtype !== 'f32' || x.dtype !== 'f32' || dst.requiresGrad || x.requiresGrad || ids.dtype !== 'i32') throw new GpuError(`${what}: dst and x must be f32 tensors without gradients, ids i32`);
    if (!(Number.isInteger(cols) && cols > 0) || x.numel % cols !== 0 || dst.numel !== ids.numel * cols) throw new GpuError(`${what}: x must be whole rows of cols, and dst one row an id`);
    if (!(Number.isInteger(moved) && moved >= 0 && moved <= ids.numel)) throw new GpuError(`${what}: moved ${moved} is not a count of its ids`);
  }
  for (const { dst, x } of pairs) launch(gatherRowsCall(deviceLimits(), ids.numel, x.numel / cols, cols, moved, zeroOthers, elementwiseShape()), [ids, x], [dst]);
}

/**
 * The ids (i32 [rows * heads * columns]) with which gatherRows moves one part's rows of a KV cache into a new one:
 * moved row r (new row moves.at + r) takes source row sources[r]'s filled columns from its padding pads[r],
 * right-aligned at moves.length (kernels/cache_row_ids.ts). Built on the device: the host uploads a pair a row.
 */
export function cacheRowIds(moves: Omit<CacheRowMoves, 'count'>, sources: readonly number[], pads: readonly number[]): Tensor {
  const count = sources.length;
  if (count === 0 || pads.length !== count || pads.some((p) => !(Number.isInteger(p) && p >= 0 && p <= moves.srcFilled)))
    throw new GpuError(`cacheRowIds: pads [${pads}] for ${count} rows (one at least) must each be within the source's ${moves.srcFilled} filled columns`);
  const pairs = Tensor.fromArray(Int32Array.from(sources.flatMap((row, r) => [row, pads[r]])), [count, 2], 'i32');
  const ids = Tensor.empty([moves.rows * moves.heads * moves.columns], 'i32', 'cache row ids');
  launch(cacheRowIdsCall(deviceLimits(), { ...moves, count }, elementwiseShape()), [pairs], [ids]);
  pairs.dispose();
  return ids;
}
