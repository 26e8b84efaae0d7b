// The one place that creates the GPU: adapter, real limits, optional features, Dawn toggles, error routing.
import { create, globals } from 'webgpu';
import { mkdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceClassOf, type SubgroupDevice } from '../kernels/matmul.ts';

Object.assign(globalThis, globals);

export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'] as const;

export class GpuError extends Error {}

/** A shape the tensor cores take through chromium-experimental-subgroup-matrix (Dawn's adapter info). */
export interface SubgroupMatrixConfig { componentType: string; resultComponentType: string; M: number; N: number; K: number }

export interface Gpu {
  device: GPUDevice;
  adapterInfo: { vendor: string; architecture: string; description: string; subgroupMinSize: number; subgroupMaxSize: number; subgroupMatrixConfigs: SubgroupMatrixConfig[] };
  features: Set<string>;
  limits: Record<string, number>;
  dawnFlags: string[];
  /** The device runs on this machine's CPU (lavapipe): host and device share the cores. */
  onHostCpu: boolean;
  /** How the host waits on the device: 'yield' its core (the default where the device is the CPU) or 'spin'. */
  hostWait: HostWait;
}

export type HostWait = 'yield' | 'spin';

let current: Gpu | null = null;
let gpuObject: GPU | null = null;
/** Name of the op whose commands are being recorded; uncaptured errors and device loss are reported against it. */
let currentOp = '(no op)';
let deferredError: GpuError | null = null;

/** The op being recorded, so that an uncaught error or device loss can name it. */
export function setCurrentOp(name: string): void { currentOp = name; }

/** Dawn toggles from JUICE_DAWN_FLAGS, comma separated, e.g. "enable-dawn-features=allow_unsafe_apis,disable_robustness". */
export function dawnFlagsFromEnv(env = process.env): string[] {
  const raw = env.JUICE_DAWN_FLAGS?.trim();
  if (!raw) return [];
  // Each flag is "key=a,b": split on ';' or whitespace between flags; commas belong to values.
  const flags = raw.split(/[;\s]+/).filter(Boolean);
  for (const f of flags) {
    const key = f.split('=')[0];
    if (!f.includes('=') || !DAWN_FLAG_KEYS.includes(key))
      throw new GpuError(`JUICE_DAWN_FLAGS: '${f}' is not a Dawn flag; expected one of ${DAWN_FLAG_KEYS.map((k) => `${k}=...`).join(', ')}`);
  }
  return flags;
}

/** The keys dawn.node's create() reads; the toggles inside them Dawn does not check, so we check their effects. */
const DAWN_FLAG_KEYS = ['enable-dawn-features', 'disable-dawn-features', 'backend', 'adapter', 'dlldir', 'validate'];

const NO_ADAPTER_HINT = `No WebGPU adapter found. juice needs a Vulkan driver:
  - a GPU: install the vendor's Vulkan driver (NVIDIA: the proprietary driver with libvulkan1; AMD/Intel: mesa-vulkan-drivers)
  - no GPU: Mesa's lavapipe (CPU). Debian 12: Dawn refuses Mesa 22, use bookworm-backports:
      echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
      apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1
    Ubuntu 24.04: apt-get install -y mesa-vulkan-drivers libvulkan1
  Check with: vulkaninfo --summary (package vulkan-tools).`;

const UNWANTED_LIMITS = new Set(['maxDynamicUniformBuffersPerPipelineLayout', 'maxDynamicStorageBuffersPerPipelineLayout']);

export async function initGpu(): Promise<Gpu> {
  if (current) return current;
  // The no-GPU test tier sets it, so that a test of that tier which reaches for a device fails instead.
  if (process.env.JUICE_NO_GPU) throw new GpuError('JUICE_NO_GPU is set: this process must not use a GPU');
  if (!process.env.XDG_RUNTIME_DIR) {
    // The Vulkan loader prints a harmless error without it; give it a private directory.
    const dir = join(tmpdir(), `juice-xdg-${process.getuid?.() ?? 0}`);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o700);
    process.env.XDG_RUNTIME_DIR = dir;
  }
  const dawnFlags = dawnFlagsFromEnv();
  gpuObject = create(dawnFlags);
  const adapter = await gpuObject.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) { gpuObject = null; throw new GpuError(NO_ADAPTER_HINT); }
  const limits: Record<string, number> = {};
  // Request every limit the adapter has (without this a device gets WebGPU's small defaults), except
  // the dynamic-offset buffer counts: juice binds no buffer with a dynamic offset, and Dawn reports
  // them "artificially reduced" for some drivers.
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === 'number' && !UNWANTED_LIMITS.has(key)) limits[key] = v;
  }
  const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits });
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs?: SubgroupMatrixConfig[] };
  device.addEventListener('uncapturederror', (ev) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    deferredError = new GpuError(`WebGPU error in op '${currentOp}': ${e.message}`);
  });
  device.lost.then((lost) => {
    if (lost.reason !== 'destroyed') deferredError = new GpuError(`GPU device lost during op '${currentOp}': ${lost.message}`);
  });
  // JUICE_MAX_BINDING_BYTES lowers the binding size juice plans with (not the device's): tests and benchmarks
  // run the windowed paths of tensors larger than one binding at small sizes.
  const cap = process.env.JUICE_MAX_BINDING_BYTES;
  if (cap !== undefined) {
    const bytes = Number(cap);
    if (!(Number.isSafeInteger(bytes) && bytes >= 4096 && bytes % 256 === 0)) throw new GpuError(`JUICE_MAX_BINDING_BYTES=${cap}: expected a multiple of 256 bytes, at least 4096`);
    limits.maxStorageBufferBindingSize = Math.min(limits.maxStorageBufferBindingSize, bytes);
  }
  const onHostCpu = deviceClassOf(info) === 'lavapipe';
  current = {
    device,
    adapterInfo: {
      vendor: info.vendor, architecture: info.architecture, description: info.description,
      subgroupMinSize: info.subgroupMinSize ?? 0, subgroupMaxSize: info.subgroupMaxSize ?? 0,
      subgroupMatrixConfigs: [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K })),
    },
    features: new Set<string>(features),
    limits,
    dawnFlags,
    onHostCpu,
    hostWait: hostWaitFromEnv(onHostCpu ? 'yield' : 'spin'),
  };
  checkFlagsTookEffect(current);
  return current;
}

/** JUICE_HOST_WAIT=yield|spin, or the device's default. */
export function hostWaitFromEnv(fallback: HostWait, env = process.env): HostWait {
  const v = env.JUICE_HOST_WAIT;
  if (v === undefined || v === '') return fallback;
  if (v !== 'yield' && v !== 'spin') throw new GpuError(`JUICE_HOST_WAIT=${v}: expected 'yield' or 'spin'`);
  return v;
}

/** A misspelled Dawn toggle is ignored without a word: check the ones whose effect we can see. */
export function checkFlagsTookEffect(gpu: Pick<Gpu, 'dawnFlags' | 'features'>): void {
  const joined = gpu.dawnFlags.join(',');
  if (joined.includes('vulkan_enable_f16_on_nvidia') && !gpu.features.has('shader-f16'))
    throw new GpuError(`JUICE_DAWN_FLAGS asked for vulkan_enable_f16_on_nvidia but the device has no 'shader-f16' (flags: ${joined})`);
  if (/disable-dawn-features=[^;\s]*timestamp_quantization/.test(joined) && !gpu.features.has('timestamp-query'))
    throw new GpuError(`JUICE_DAWN_FLAGS disables timestamp_quantization but the device has no 'timestamp-query'`);
}

/** Throws the first uncaptured error or device loss seen since the last call. */
export function throwIfGpuFailed(): void {
  if (deferredError) { const e = deferredError; deferredError = null; throw e; }
}

/** Destroys the device and drops the GPU object so that Node can exit. */
export function releaseGpu(): void {
  for (const fn of releaseHooks) fn();
  pendingWaits.clear();
  current?.device.destroy();
  current = null;
  gpuObject = null;
}

const releaseHooks: (() => void)[] = [];

/** Caches of GPU objects (pipelines, pooled buffers, tables) register here to be dropped with the device. */
export function onGpuRelease(fn: () => void): void { releaseHooks.push(fn); }

/** The device, once initGpu() has run: ops record synchronously and need it without awaiting. */
/** The subgroup facts the rows kernels (matmul's and attention's) need of a device. */
export function subgroupDevice(g: Gpu = gpu()): SubgroupDevice {
  return { subgroups: g.features.has('subgroups'), subgroupMinSize: g.adapterInfo.subgroupMinSize, subgroupMaxSize: g.adapterInfo.subgroupMaxSize };
}

export function gpu(): Gpu {
  if (!current) throw new GpuError('GPU not initialised: call `await initGpu()` before creating tensors');
  return current;
}

// dawn.node polls the device in a setImmediate loop while any of its promises is pending, which keeps the main thread
// busy. On a CPU device that core belongs to the device's threads (2-core lavapipe ran the block step 1.7x slower), so
// there (hostWait 'yield') each turn of the event loop sleeps while juice waits on the device: a twentieth of the time
// since the latest wait began, within 0.05..2 ms, so that a short wait stays short and a long one polls rarely.
const WAIT_SLEEP_MIN_MS = 0.05;
const WAIT_SLEEP_MAX_MS = 2;
const WAIT_SLEEP_FRACTION = 0.05;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
// The waits pending on the current device; a device's release drops its own, so that a wait that never settles
// cannot keep the loop (and the process) alive.
const pendingWaits = new Set<Promise<unknown>>();
let latestWaitStart = 0;
let yielding = false;

/** p, a promise of Dawn's (queue done, map, error scope); on a CPU device the host yields its core until it settles. */
export function awaitDevice<T>(p: Promise<T>): Promise<T> {
  if (current?.hostWait !== 'yield') return p;
  pendingWaits.add(p);
  latestWaitStart = performance.now();
  if (!yielding) { yielding = true; setImmediate(yieldTurn); }
  return p.finally(() => { pendingWaits.delete(p); });
}

/** Sets how the host waits from now on (bench/block_step.ts --host-wait both compares the two in one run). */
export function setHostWait(mode: HostWait): void { gpu().hostWait = mode; }

function yieldTurn(): void {
  if (pendingWaits.size === 0) { yielding = false; return; }
  const waited = performance.now() - latestWaitStart;
  Atomics.wait(sleepCell, 0, 0, Math.min(WAIT_SLEEP_MAX_MS, Math.max(WAIT_SLEEP_MIN_MS, WAIT_SLEEP_FRACTION * waited)));
  setImmediate(yieldTurn);
}

/** Errors popped from error scopes surface here and are thrown at the next sync point. */
export function deferGpuError(e: GpuError): void { deferredError ??= e; }
