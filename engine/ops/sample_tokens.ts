// The next token of each row of logits, chosen on the GPU (kernels/sample_tokens.wgsl): greedy, or
// temperature, top-k and top-p (transformers' order) and one draw from a counter-based generator keyed by
// (seed, the row's own step, row id). Not differentiable: nothing is recorded on the tape.
import { GpuError } from '../gpu.ts';
import { deviceLimits, launch } from '../launch.ts';
import { Tensor, shapeString } from '../tensor.ts';
import { sampleTokensCall, type TokenSampling } from '../../kernels/sample_tokens.ts';

/**
 * logits f32 [..., V], rowCounters i32 [rows, 2]: each logits row's generator row id and the step it drew its first
 * token at (a row draws at step - first: the same numbers wherever and whenever it sits in a batch) -> ids i32 [rows], rows =
 * the product of the leading dims.
 */
export function sampleTokens(logits: Tensor, rowCounters: Tensor, s: TokenSampling): Tensor {
  const what = `sampleTokens(logits ${logits.dtype} ${shapeString(logits.shape)}, rowCounters ${rowCounters.dtype} ${shapeString(rowCounters.shape)})`;
  if (logits.dtype !== 'f32' || logits.rank < 1) throw new GpuError(`${what}: logits must be f32 [..., V]`);
  const V = logits.shape[logits.rank - 1];
  const rows = V === 0 ? 0 : logits.numel / V;
  if (rowCounters.dtype !== 'i32' || rowCounters.shape.join() !== [rows, 2].join()) throw new GpuError(`${what}: rowCounters must be i32 [${rows}, 2], a (row id, first step) per row`);
  const ids = Tensor.empty([rows], 'i32', 'sampleTokens');
  if (rows > 0) launch(sampleTokensCall(deviceLimits(), rows, V, s), [logits, rowCounters], [ids]);
  return ids;
}
