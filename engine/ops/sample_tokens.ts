// The next token of each row of logits, chosen on the GPU (kernels/sample_tokens.wgsl): greedy, or
// temperature, top-k and top-p (transformers' order) and one draw from a counter-based generator keyed by
// (seed, step, row id). Not differentiable: nothing is recorded on the tape.
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { sampleTokensCall, type TokenSampling } from '../../kernels/sample_tokens.ts';

/**
 * logits f32 [..., V], rowIds i32 [rows] (the generator's row of each logits row, so that a row draws the same
 * numbers wherever it sits in a batch) -> ids i32 [rows], rows = the product of the leading dims.
 */
export function sampleTokens(logits: Tensor, rowIds: Tensor, s: TokenSampling): Tensor {
  const what = `sampleTokens(logits ${logits.dtype} ${shapeString(logits.shape)}, rowIds ${rowIds.dtype} ${shapeString(rowIds.shape)})`;
  if (logits.dtype !== 'f32' || logits.rank < 1) throw new GpuError(`${what}: logits must be f32 [..., V]`);
  const V = logits.shape[logits.rank - 1];
  const rows = V === 0 ? 0 : logits.numel / V;
  if (rowIds.dtype !== 'i32' || rowIds.numel !== rows) throw new GpuError(`${what}: rowIds must be i32 with one id per row (${rows})`);
  const ids = Tensor.empty([rows], 'i32', 'sampleTokens');
  if (rows > 0) launch(sampleTokensCall(deviceLimits(), rows, V, s), [logits, rowIds], [ids]);
  return ids;
}
