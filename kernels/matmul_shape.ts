// What every matmul kernel shares (matmul.ts and its variants import it, it imports none of them): the product's
// shape, its cost, and the epilogue of its store.
import { ACTIVATIONS, activationFlops, type Activation } from './activation.ts';
import { bytesPerElement, type FloatDType } from './dtype.ts';
import type { KernelCall } from './spec.ts';

/** One batched product: op(A) is M×K, op(B) K×N, per batch entry; strides in elements, 0 to broadcast. */
export interface MatmulShape {
  batch: number;
  M: number;
  N: number;
  K: number;
  strideA: number;
  strideB: number;
  transA: boolean;
  transB: boolean;
  hasBias: boolean;
  /** C also adds a residual of its own shape (absent: none). */
  hasResidual?: boolean;
  /** C = f(product + bias) (+ residual) (absent: none). */
  activation?: Activation;
  dtypeA: FloatDType;
  dtypeB: FloatDType;
}

/** The inputs of every matmul kernel: the operands, then the optional bias [N] and residual (C's shape). */
export const MATMUL_INPUTS = ['a', 'b', 'bias', 'residual'] as const;

/**
 * The store of every matmul kernel, c = addResidual(activate(addBias(acc, n)), i): the includes that declare its
 * optional inputs (bias.wgsl, residual.wgsl) and activation (activation_math.wgsl, matmul_activation.wgsl: the FN
 * constant) or leave them out (no_bias.wgsl, no_residual.wgsl, no_activation.wgsl), the inputs the variant leaves
 * absent, and the constants it adds.
 */
export function epilogueParts(hasBias: boolean, hasResidual: boolean, activation?: Activation): { includes: string[]; absent: string[]; constants: string[] } {
  return {
    includes: [
      hasBias ? 'bias.wgsl' : 'no_bias.wgsl', hasResidual ? 'residual.wgsl' : 'no_residual.wgsl',
      ...(activation ? ['activation_math.wgsl', 'matmul_activation.wgsl'] : ['no_activation.wgsl']),
    ],
    absent: [...(hasBias ? [] : ['bias']), ...(hasResidual ? [] : ['residual'])],
    constants: activation ? ['FN'] : [],
  };
}

/** The cache key of a kernel variant by its epilogue (the activation's function is a constant, not a variant). */
export const epilogueKey = (hasBias: boolean, hasResidual: boolean, activation?: Activation) =>
  `${hasBias ? ' bias' : ''}${hasResidual ? ' residual' : ''}${activation ? ' activation' : ''}`;

/**
 * The epilogue's constants for s (the activation's FN) and its FLOPs over `outputs` elements: an add each for the
 * bias and the residual, f's; the residual's and f's also as `fused` (the ledger charges them as 'add' and f).
 */
export function epilogueOf(s: MatmulShape, outputs = 0): { constants: Record<string, number>; flops: number; fused: { op: string; flops: number }[] } {
  const fused = [
    ...(s.hasResidual ? [{ op: 'add', flops: outputs }] : []),
    ...(s.activation ? [{ op: s.activation, flops: activationFlops(s.activation) * outputs }] : []),
  ];
  return {
    constants: s.activation ? { FN: ACTIVATIONS[s.activation] } : {},
    flops: (s.hasBias ? outputs : 0) + fused.reduce((n, f) => n + f.flops, 0),
    fused,
  };
}

// A multiply-add per (output, k), and the epilogue's per output (epilogueOf). Each operand is read from memory once
// (tile re-reads are cache traffic), the residual once, C written once.
export function matmulCost(s: MatmulShape): Pick<KernelCall, 'cost'> {
  const aElements = (s.strideA === 0 ? 1 : s.batch) * s.M * s.K;
  const bElements = (s.strideB === 0 ? 1 : s.batch) * s.K * s.N;
  const outputs = s.batch * s.M * s.N;
  const epilogue = epilogueOf(s, outputs);
  return {
    cost: {
      flops: 2 * outputs * s.K + epilogue.flops,
      fused: epilogue.fused,
      bytesRead: bytesPerElement(s.dtypeA) * aElements + bytesPerElement(s.dtypeB) * bElements + (s.hasBias ? 4 * s.N : 0) + (s.hasResidual ? 4 * outputs : 0),
      bytesWritten: 4 * outputs,
    },
  };
}
