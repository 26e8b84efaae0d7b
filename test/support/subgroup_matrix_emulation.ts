// Tests only: the tensor-core shaders (attention forward and backward, matmul) with their subgroup-matrix builtins rewritten
// into scalar code, so that devices without subgroup matrices (lavapipe) check the kernels' logic, and the attention's
// tensor-core paths on them (emulatedTensorCores). Not part of kernels/: no production path builds it.
import type { KernelCall, Kernel } from '../../kernels/spec.ts';
import { attentionTensorCoreCall, attentionTensorCoreKernel, type MatrixShape, type TensorCoreVariant } from '../../kernels/attention_forward_tensor_core.ts';
import { attentionBackwardTensorCoreCall, type TensorCoreBackwardVariant } from '../../kernels/attention_backward_tensor_core.ts';
import { matmulTensorCoreCall, type MatmulTensorCoreVariant } from '../../kernels/matmul_tensor_core.ts';
import type { MatmulShape } from '../../kernels/matmul.ts';
import type { AttentionDims, AttentionMask } from '../../kernels/attention_forward.ts';
import { subgroupMatrixDevice, type TensorCores } from '../../engine/ops/attention.ts';

/**
 * The shader with the subgroup-matrix builtins rewritten into scalar functions (tests only): Left, Right and Acc
 * become structs holding a whole matrix row-major in f32 in every lane; a load reads it all, the product
 * accumulates it all, a store writes it all (the lanes of a subgroup write the same values). Element (r, c) of a
 * load or store at (offset, stride) lies at offset + r·stride + c (row_major, the one layout the kernel uses).
 */
export function emulate(source: string, v: { shape: MatrixShape }): string {
  const { M: TM, N: TN, K: TK } = v.shape;
  const dims: Record<string, [number, number]> = { Left: [TM, TK], Right: [TK, TN], Acc: [TM, TN] };
  // Loop bounds the compiler cannot fold (see emulatedZero): fully unrolled, these loops take lavapipe's
  // compiler tens of seconds per shader.
  const n = (count: number) => `${count}u + emulatedZero`;
  const helpers = new Map<string, string>();
  let out = source
    .replace('enable chromium_experimental_subgroup_matrix;\n', '')
    .replace('diagnostic(off, chromium.subgroup_matrix_uniformity);\n', '')
    .replace(/alias (Left|Right|Acc) = subgroup_matrix_\w+<[^>]*>;/g, (_, type: string) => `struct ${type} { e: array<f32, ${dims[type]![0] * dims[type]![1]}> }`)
    .replace(/subgroupMatrixLoad<(Left|Right), row_major>\(&(\w+), /g, (_, type: string, array: string) => {
      const name = `emulatedLoad_${type}_${array}`;
      const [rows, cols] = dims[type]!;
      helpers.set(name, `fn ${name}(offset: u32, stride: u32) -> ${type} {
  var m: ${type};
  for (var r = 0u; r < ${n(rows)}; r++) { for (var c = 0u; c < ${n(cols)}; c++) { m.e[r * ${cols}u + c] = f32(${array}[offset + r * stride + c]); } }
  return m;
}`);
      return `${name}(`;
    })
    .replace(/subgroupMatrixStore<row_major>\(&(\w+), /g, (_, array: string) => {
      const name = `emulatedStore_${array}`;
      helpers.set(name, `fn ${name}(offset: u32, m: Acc, stride: u32) {
  for (var r = 0u; r < ${n(TM)}; r++) { for (var c = 0u; c < ${n(TN)}; c++) { ${array}[offset + r * stride + c] = m.e[r * ${TN}u + c]; } }
}`);
      return `${name}(`;
    })
    .replaceAll('subgroupMatrixMultiplyAccumulate(', 'emulatedMultiplyAccumulate(');
  if (/subgroup_?[mM]atrix/.test(out.replace(/\/\/[^\n]*/g, ''))) throw new Error('emulate: a subgroup-matrix construct was left unrewritten');
  helpers.set('emulatedMultiplyAccumulate', `fn emulatedMultiplyAccumulate(a: Left, b: Right, acc: Acc) -> Acc {
  var m = acc;
  for (var r = 0u; r < ${n(TM)}; r++) {
    for (var c = 0u; c < ${n(TN)}; c++) {
      var s = m.e[r * ${TN}u + c];
      for (var i = 0u; i < ${n(TK)}; i++) { s = fma(a.e[r * ${TK}u + i], b.e[i * ${TN}u + c], s); }
      m.e[r * ${TN}u + c] = s;
    }
  }
  return m;
}`);
  out += `\n// Emulated subgroup-matrix builtins (tests only).
// Never written: zero at run time (workgroup memory starts zeroed), but not a constant to the compiler.
var<workgroup> emulatedZero: u32;
${[...helpers.values()].join('\n')}\n`;
  return out;
}

const emulatedKernels = new Map<Kernel, Kernel>();

/** The kernel with emulated matrices of this shape, once per kernel (its name says so in the ledger). */
function emulatedKernel(kernel: Kernel, shape: MatrixShape): Kernel {
  let emulated = emulatedKernels.get(kernel);
  if (!emulated) emulatedKernels.set(kernel, (emulated = { ...kernel, name: `${kernel.name}Emulated`, source: emulate(kernel.source, { shape }) }));
  return emulated;
}

/** The variant's kernel (with keyRange or without) with emulated matrices. */
export function emulatedTensorCoreKernel(v: TensorCoreVariant, hasKeyRange: boolean): Kernel {
  return emulatedKernel(attentionTensorCoreKernel(v, hasKeyRange), v.shape);
}

/** attentionTensorCoreCall, on the emulated kernel. */
export function emulatedTensorCoreCall(dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreVariant): KernelCall {
  return { ...attentionTensorCoreCall(dims, mask, scale, v), kernel: emulatedTensorCoreKernel(v, mask.hasKeyRange) };
}

/** attentionBackwardTensorCoreCall (dK and dV, or dQ), on the emulated kernel. */
export function emulatedBackwardTensorCoreCall(dims: AttentionDims, mask: AttentionMask, scale: number, v: TensorCoreBackwardVariant): KernelCall {
  const call = attentionBackwardTensorCoreCall(dims, mask, scale, v);
  return { ...call, kernel: emulatedKernel(call.kernel, v.shape) };
}

/**
 * The attention's tensor cores on emulated matrices (engine/ops/attention.ts withTensorCores): this device described
 * as one with subgroup matrices of one f16 -> f32 shape and a fixed subgroup of `subgroupSize` lanes (its other
 * features and limits its own), and the emulated kernels.
 */
export function emulatedTensorCores(shape: MatrixShape, subgroupSize: number): TensorCores {
  return {
    device: () => {
      const own = subgroupMatrixDevice();
      return {
        ...own, features: new Set([...own.features, 'chromium-experimental-subgroup-matrix']), subgroupMinSize: subgroupSize, subgroupMaxSize: subgroupSize,
        subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', ...shape }],
      };
    },
    forwardCall: emulatedTensorCoreCall,
    backwardCall: emulatedBackwardTensorCoreCall,
  };
}

/** matmulTensorCoreCall, on the emulated kernel. */
export function emulatedMatmulTensorCoreCall(s: MatmulShape, v: MatmulTensorCoreVariant): KernelCall {
  const call = matmulTensorCoreCall(s, v);
  const emulated = emulatedKernel(call.kernel, v.shape);
  return { ...call, kernel: emulated, op: emulated.name };
}
