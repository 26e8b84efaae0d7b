// delta = rowsum(dO ∘ O) per query row, read by both attention backward kernels.
import { grid1d, loadWgsl, type Kernel, type KernelCall, type DeviceLimits } from './spec.ts';

export const attentionDeltaKernel: Kernel = {
  name: 'attentionBackwardDelta',
  source: loadWgsl(import.meta.url, 'attention_delta.wgsl'),
  inputs: ['dout', 'out'],
  outputs: ['delta'],
  params: [['rows', 'u32']],
  constants: ['D', 'WG'],
};

const WG = 64;

/** dout and out [rows, D] (rows = B·H·T): delta [rows]. */
export function attentionDeltaCall(limits: DeviceLimits, rows: number, D: number): KernelCall {
  return {
    kernel: attentionDeltaKernel,
    constants: { D, WG },
    params: { rows },
    workgroups: grid1d(rows, WG, limits),
    cost: { flops: 2 * rows * D, bytesRead: 8 * rows * D, bytesWritten: 4 * rows },
  };
}
