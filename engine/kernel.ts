// What a kernel wrapper states: its WGSL, bindings, uniform parameters, variant constants, dispatch size and cost.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gpu } from './gpu.ts';
import type { Cost } from './ledger.ts';

export type ParamType = 'u32' | 'i32' | 'f32';

/**
 * A WGSL compute kernel. Bindings in group 0 are, in order: `inputs` (storage, read), `outputs`
 * (storage, read_write), then one uniform `params: Params` whose fields are `params` in order.
 * A kernel without params has no uniform binding.
 */
export interface Kernel {
  name: string;
  source: string;
  inputs: readonly string[];
  outputs: readonly string[];
  params: readonly (readonly [string, ParamType])[];
  /** Names of the WGSL `override` constants that select a variant; part of the pipeline cache key. */
  constants?: readonly string[];
}

/** One dispatch of a kernel for given shapes. */
export interface KernelCall {
  kernel: Kernel;
  /** Values for the kernel's override constants (workgroup size, transposes, ...). */
  constants?: Record<string, number>;
  params?: Record<string, number>;
  workgroups: readonly [number, number?, number?];
  cost: Cost;
  /** Ledger name when it differs from kernel.name (e.g. "matmulBackward" running the matmul kernel). */
  op?: string;
}

/** Reads a .wgsl file that sits beside the wrapper module that calls it. */
export function loadWgsl(moduleUrl: string, file: string): string {
  return readFileSync(fileURLToPath(new URL(file, moduleUrl)), 'utf8');
}

export function ceilDiv(a: number, b: number): number { return Math.floor((a + b - 1) / b); }

/** Workgroups covering n threads in groups of wg, folded into y when x would pass the per-dimension limit. */
export function grid1d(n: number, wg: number, maxPerDim = gpu().limits.maxComputeWorkgroupsPerDimension): [number, number] {
  const groups = ceilDiv(n, wg);
  if (groups <= maxPerDim) return [groups, 1];
  const y = ceilDiv(groups, maxPerDim);
  return [ceilDiv(groups, y), y];
}

/**
 * Threads for a workgroup that reduces a row: the largest power of two <= preferred (256, WebGPU's
 * guaranteed size, by default) that fits the device's invocation and workgroup-memory limits, with
 * bytesPerThread of workgroup memory per thread plus fixedBytes.
 */
export function reductionWorkgroupSize(bytesPerThread: number, fixedBytes = 0, preferred = 256): number {
  const { limits } = gpu();
  let wg = 2 ** Math.floor(Math.log2(Math.max(1, preferred)));
  while (wg > 1 && (wg > limits.maxComputeInvocationsPerWorkgroup || wg > limits.maxComputeWorkgroupSizeX
    || wg * bytesPerThread + fixedBytes > limits.maxComputeWorkgroupStorageSize)) wg /= 2;
  return wg;
}

/** The smallest power of two >= n. */
export function nextPowerOfTwo(n: number): number { return 2 ** Math.ceil(Math.log2(Math.max(1, n))); }

/** The storage of a float operand a kernel reads: f32, or 16-bit floats two per word that it widens to f32. */
export type FloatStorage = 'f32' | 'f16' | 'bf16';

/** The format constants of kernels/float_storage.wgsl (F32, F16, BF16): the values of the *_FORMAT overrides. */
export const FORMAT_CONSTANT: Record<FloatStorage, number> = { f32: 0, f16: 1, bf16: 2 };

export function isFloatStorage(dtype: string): dtype is FloatStorage { return Object.hasOwn(FORMAT_CONSTANT, dtype); }
