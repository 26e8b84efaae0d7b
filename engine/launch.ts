// Runs a kernel call on tensors: the bridge between op code (tensors) and the runtime (buffer ranges).
import type { KernelCall } from './kernel.ts';
import { dispatch } from './runtime.ts';
import type { Tensor } from './tensor.ts';

export function launch(call: KernelCall, inputs: Tensor[], outputs: Tensor[]): void {
  dispatch(call, inputs.map((t) => t.binding()), outputs.map((t) => t.binding()));
}
