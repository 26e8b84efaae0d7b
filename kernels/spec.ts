// What a kernel states: its WGSL, bindings, uniform parameters, variant constants, dispatch size and cost.
// The bottom layer: nothing here knows about a GPU device. A kernel's call takes the device limits it needs as
// an argument, so that its plan (tiles, workgroup sizes, grids) can be computed for any device, present or not.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type ParamType = 'u32' | 'i32' | 'f32';

/** The analytic cost of one dispatch. */
export interface Cost {
  flops: number;
  bytesRead: number;
  bytesWritten: number;
  /**
   * FLOPs, among `flops`, of ops the kernel computes in its epilogue (e.g. a matmul's residual add and activation),
   * charged to those ops' names in the ledger so that its by-op count reads as the unfused ops' would.
   */
  fused?: readonly { op: string; flops: number }[];
}

/**
 * A WGSL compute kernel. Bindings in group 0 are numbered in this order: `inputs` (storage, read), `outputs`
 * (storage, read_write), then one uniform `params: Params` whose fields are `params` in order (bound with a
 * dynamic offset). A kernel without params has no uniform binding. `absent` inputs and outputs keep their binding
 * number but are neither declared by this variant's WGSL nor bound (the call passes null for them).
 */
export interface Kernel {
  name: string;
  source: string;
  inputs: readonly string[];
  outputs: readonly string[];
  params: readonly (readonly [string, ParamType])[];
  /** Names of the WGSL `override` constants that select a variant; part of the pipeline cache key. */
  constants?: readonly string[];
  /** Inputs or outputs this variant leaves out (an optional one, e.g. a bias, in the variant without it). */
  absent?: readonly string[];
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

/** A kernel spec refuses a shape, a variant or a device (thrown before anything reaches a GPU). */
export class KernelError extends Error {}

/** The device limits that kernel plans read (a subset of GPUSupportedLimits). */
export interface DeviceLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  minUniformBufferOffsetAlignment: number;
  minStorageBufferOffsetAlignment: number;
}

export const DEVICE_LIMIT_NAMES: readonly (keyof DeviceLimits)[] = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage', 'minUniformBufferOffsetAlignment', 'minStorageBufferOffsetAlignment',
];

/** The DeviceLimits of a full limits table (e.g. a device's GPUSupportedLimits); throws if one is missing. */
export function deviceLimitsOf(limits: Readonly<Record<string, number>>): DeviceLimits {
  const missing = DEVICE_LIMIT_NAMES.filter((n) => typeof limits[n] !== 'number');
  if (missing.length) throw new KernelError(`device limits lack ${missing.join(', ')}`);
  return Object.fromEntries(DEVICE_LIMIT_NAMES.map((n) => [n, limits[n]])) as unknown as DeviceLimits;
}

/** Reads a .wgsl file that sits beside the spec module that calls it. */
export function loadWgsl(moduleUrl: string, file: string): string {
  return readFileSync(fileURLToPath(new URL(file, moduleUrl)), 'utf8');
}

/** How a kernel's WGSL is composed; see wgsl(). */
export interface WgslParts {
  /** Whole directive lines (`enable f16;`, `diagnostic(...)`), which WGSL requires before any declaration. */
  directives?: readonly string[];
  /** Files beside the spec whose declarations the kernel uses (shared functions, optional bindings). */
  includes?: readonly string[];
  /** Values for the `{{NAME}}` markers of the file and its includes, for what override constants cannot set. */
  placeholders?: Readonly<Record<string, string | number>>;
}

const PLACEHOLDER = /\{\{(\w+)\}\}/g;

/**
 * A kernel's WGSL: its directives, then its includes, then the file, with every `{{NAME}}` replaced. The one way
 * juice composes WGSL: override constants wherever WGSL allows them, this for the rest (matrix types, storage
 * types, module-scope `const`s, optional bindings). Throws on a marker without a value, a value without a marker,
 * or a marker left after substitution.
 */
export function wgsl(moduleUrl: string, file: string, parts: WgslParts = {}): string {
  const { directives = [], includes = [], placeholders = {} } = parts;
  const text = [...directives, ...includes.map((f) => loadWgsl(moduleUrl, f)), loadWgsl(moduleUrl, file)].join('\n');
  const used = new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]!));
  const undeclared = [...used].filter((n) => !Object.hasOwn(placeholders, n));
  if (undeclared.length) throw new KernelError(`${file}: placeholders ${undeclared.map((n) => `{{${n}}}`).join(', ')} have no value`);
  const unused = Object.keys(placeholders).filter((n) => !used.has(n));
  if (unused.length) throw new KernelError(`${file}: placeholders ${unused.join(', ')} appear nowhere in it or its includes`);
  const out = text.replace(PLACEHOLDER, (_, n: string) => String(placeholders[n]));
  if (/\{\{|\}\}/.test(out)) throw new KernelError(`${file}: a placeholder marker is left after substitution`);
  return out;
}

export function ceilDiv(a: number, b: number): number { return Math.floor((a + b - 1) / b); }

/** The greatest common divisor of two non-negative integers (alignment steps). */
export function gcd(a: number, b: number): number { return b === 0 ? a : gcd(b, a % b); }

/** Workgroups covering n threads in groups of wg, folded into y when x would pass the per-dimension limit. */
export function grid1d(n: number, wg: number, limits: Pick<DeviceLimits, 'maxComputeWorkgroupsPerDimension'>): [number, number] {
  const maxPerDim = limits.maxComputeWorkgroupsPerDimension;
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
export function reductionWorkgroupSize(limits: DeviceLimits, bytesPerThread: number, fixedBytes = 0, preferred = 256): number {
  let wg = 2 ** Math.floor(Math.log2(Math.max(1, preferred)));
  while (wg > 1 && (wg > limits.maxComputeInvocationsPerWorkgroup || wg > limits.maxComputeWorkgroupSizeX
    || wg * bytesPerThread + fixedBytes > limits.maxComputeWorkgroupStorageSize)) wg /= 2;
  return wg;
}

// About 32 elements per thread: a warp per row of 768 as in llm.c's layernorm kernels. Each barrier of a reduction
// costs every 8 invocations a fiber switch on lavapipe, where 256 threads per row of 768 ran 3-8x slower, and 256
// per row of a 19-token vocabulary 25x (bench/RESULTS.md).
const ELEMENTS_PER_THREAD = 32;

/**
 * Threads of a kernel that reduces a row of `cols` elements in one workgroup (norms, the logsumexp of a row of
 * logits): about elementsPerThread elements each (Infinity: one thread), maxThreads at most, within the limits.
 */
export function rowWorkgroupSize(limits: DeviceLimits, cols: number, bytesPerThread: number, fixedBytes = 0, elementsPerThread = ELEMENTS_PER_THREAD, maxThreads = 256): number {
  return reductionWorkgroupSize(limits, bytesPerThread, fixedBytes, Math.min(maxThreads, nextPowerOfTwo(cols / elementsPerThread)));
}

/**
 * The most threads a row of logits takes (tokenLogprobs, crossEntropy: a workgroup a row), by device (the ops pick
 * by Gpu.onHostCpu): 256 on a GPU; 8 on a CPU driver, a workgroup lavapipe runs as one fiber, so that the tree's
 * barriers switch none. There tokenLogprobs at [4, 192] x 260 took 0.8-1.1 ms against 1.0-1.3 with 16 threads, at
 * [4, 128] x 50304 28 ms against 37-53 with 256 (bench/RESULTS.md).
 */
export const LOGIT_ROW_THREADS = { gpu: 256, cpu: 8 } as const;

/**
 * How the norms split their rows, by device (the ops pick by Gpu.onHostCpu): `elementsPerThread` of a row a thread
 * (rowWorkgroupSize), and rows side by side in a workgroup until it has `groupThreads` threads, where a row takes
 * fewer. On a GPU about 32 elements a thread, rows side by side up to 32 threads: on lavapipe a workgroup, and each
 * barrier's fiber switch, costs as much for 2 threads as for 8. On a CPU driver one thread a row, whose sums then
 * take no barrier (workgroup_sum.wgsl), 16 rows a workgroup: on lavapipe the forwards 1.2-2.8x faster than in the GPU's
 * shape, the backwards 1.2-1.6x, from rows of 64 to 4096 (bench/norms.ts, bench/RESULTS.md).
 */
export interface RowReductionShape { elementsPerThread: number; groupThreads: number }
export const ROW_REDUCTION_SHAPES = {
  gpu: { elementsPerThread: ELEMENTS_PER_THREAD, groupThreads: 32 },
  cpu: { elementsPerThread: Infinity, groupThreads: 16 },
} as const satisfies Record<string, RowReductionShape>;

/**
 * How a row-reduction kernel's workgroup splits in `shape`: `rowThreads` threads a row (rowWorkgroupSize: the same
 * threads, so the same sums, however many rows share the workgroup), `rows` rows side by side (at most maxRows, but
 * for a thread a row), `threads` in all.
 */
export function rowGroup(limits: DeviceLimits, shape: RowReductionShape, cols: number, bytesPerThread: number, fixedBytes = 0, maxRows = Infinity): { threads: number; rowThreads: number; rows: number } {
  const rowThreads = rowWorkgroupSize(limits, cols, bytesPerThread, fixedBytes, shape.elementsPerThread);
  // A thread a row whatever its length (a CPU driver's shape) fills the workgroup whatever maxRows: idle threads cost
  // a CPU driver little, and every row count (a rollout's shrinking batch) then runs one pipeline.
  const oneThreadRows = shape.elementsPerThread === Infinity;
  let rows = Math.max(1, Math.min(shape.groupThreads / rowThreads, oneThreadRows ? Infinity : nextPowerOfTwo(maxRows)));
  while (rows > 1 && (rows * rowThreads > limits.maxComputeInvocationsPerWorkgroup || rows * rowThreads > limits.maxComputeWorkgroupSizeX
    || rows * rowThreads * bytesPerThread + fixedBytes > limits.maxComputeWorkgroupStorageSize)) rows /= 2;
  return { threads: rows * rowThreads, rowThreads, rows };
}

/**
 * How an elementwise kernel's workgroups cover n elements: `threads` a workgroup, each taking up to `perThread`
 * elements (WG apart), but no fewer than `workgroups` workgroups where n allows.
 */
export interface ElementwiseShape { threads: number; perThread: number; workgroups: number }

/**
 * Elementwise kernels' shapes by device: a thread an element on a GPU; on a CPU driver (lavapipe), where every
 * invocation costs a fixed overhead, 64 threads of up to 64 elements, in 16 workgroups at least so that the device's
 * threads share them (the ops pick by Gpu.onHostCpu). On lavapipe, 1.3-2.5x faster for 4K to 1M elements
 * (bench/RESULTS.md).
 */
export const ELEMENTWISE_SHAPES = {
  gpu: { threads: 256, perThread: 1, workgroups: 1 },
  cpu: { threads: 64, perThread: 64, workgroups: 16 },
} as const satisfies Record<string, ElementwiseShape>;

/** Elements a thread takes in `shape` for a kernel over n. */
export function elementsPerThread(n: number, shape: ElementwiseShape): number {
  return Math.max(1, Math.min(shape.perThread, Math.floor(n / (shape.threads * shape.workgroups))));
}

/** The constants, perThread parameter and grid of an elementwise kernel (elementwise_main.wgsl) over n elements. */
export function elementwiseLaunch(limits: DeviceLimits, n: number, shape: ElementwiseShape): { constants: Record<string, number>; perThread: number; workgroups: [number, number] } {
  const perThread = elementsPerThread(n, shape);
  return { constants: { WG: shape.threads }, perThread, workgroups: grid1d(n, shape.threads * perThread, limits) };
}

/**
 * elementwiseLaunch over n f32 elements taken in vec4f quads where `quads` (by default where n divides by 4), else in
 * words: the kernel's element count and its launch. On a CPU driver a load or store moves a quad for a word's cost.
 */
export function elementwiseQuadsLaunch(limits: DeviceLimits, n: number, shape: ElementwiseShape, what: string, quads = n % 4 === 0):
  { quads: boolean; values: number; constants: Record<string, number>; perThread: number; workgroups: [number, number] } {
  if (quads && n % 4 !== 0) throw new KernelError(`${what}: ${n} elements are not whole vec4s`);
  const values = quads ? n / 4 : n;
  return { quads, values, ...elementwiseLaunch(limits, values, shape) };
}

/** The smallest power of two >= n. */
export function nextPowerOfTwo(n: number): number { return 2 ** Math.ceil(Math.log2(Math.max(1, n))); }
