// Command recording: every dispatch of a step goes into one encoder; flush() submits once, sync() waits.
// Pipelines and bind groups are cached; kernel parameters go through one uniform ring per batch, bound at a
// dynamic offset, so a bind group does not depend on where a dispatch's parameters sit in the ring.
// Bind-group layouts come from the kernel spec (inputs read-only storage, outputs storage, the params uniform).
import { awaitDevice, gpu, GpuError, deferGpuError, onGpuRelease, setCurrentOp, throwIfGpuFailed } from './gpu.ts';
import type { Kernel, KernelCall } from '../kernels/spec.ts';
import { ledger, type LedgerEntry } from './ledger.ts';
import { pool, sizeClass, type PooledBuffer } from './pool.ts';

/** What a kernel binds: a range of a pooled buffer (a tensor's bytes). */
export interface Binding { buf: PooledBuffer; offset: number; size: number }

const MAX_TIMED = 2048; // dispatches timed per batch before an early flush

interface Batch {
  encoder: GPUCommandEncoder;
  pass: GPUComputePassEncoder | null;
  dispatches: number;
  timedEntries: LedgerEntry[];
}

let batchIndex = 0;
let submits = 0;
let batch: Batch | null = null;
const plans = new Map<Kernel, KernelPlan>();
const bindGroups = new Map<string, GPUBindGroup>();

// Uniform ring: parameters of every dispatch of a batch, written with one writeBuffer at flush.
let uniformBuffer: GPUBuffer | null = null;
let uniformBufferBytes = 0; // its size, kept here: reading GPUBuffer.size is a call into Dawn
let uniformStaging = new ArrayBuffer(1 << 20);
let uniformUsed = 0;

let querySet: GPUQuerySet | null = null;
let queryResolve: GPUBuffer | null = null;
const pendingTimings: Promise<void>[] = [];
const stagingToDestroy: GPUBuffer[] = [];

onGpuRelease(() => {
  batch = null;
  plans.clear();
  bindGroups.clear();
  uniformBuffer = null;
  uniformUsed = 0;
  querySet = null;
  queryResolve = null;
  stagingToDestroy.length = 0;
});

/** The index of the batch now being recorded; buffers touched by it must not be overwritten by writeBuffer. */
export function currentBatch(): number { return batchIndex; }

function openBatch(): Batch {
  if (!batch) batch = { encoder: gpu().device.createCommandEncoder(), pass: null, dispatches: 0, timedEntries: [] };
  return batch;
}

/** The open encoder, with any compute pass ended, for copies and clears. */
export function commandEncoder(): GPUCommandEncoder {
  const b = openBatch();
  if (b.pass) { b.pass.end(); b.pass = null; }
  return b.encoder;
}

/** Bytes of a kernel's Params block: 4 per field, rounded up to 16 (a uniform struct's alignment). */
function paramsBytes(kernel: Kernel): number { return Math.ceil((kernel.params.length * 4) / 16) * 16; }

/**
 * What the runtime works out once per kernel: the group-0 layout its spec states (binding i for the i-th of inputs
 * (read-only storage) then outputs (storage), then the params uniform with a dynamic offset; absent inputs and
 * outputs keep their number and have no entry), which bindings its variant leaves out, and its pipelines by constants.
 */
interface KernelPlan {
  layout: GPUBindGroupLayout;
  id: number;
  absent: boolean[]; // per binding, inputs then outputs
  paramsBytes: number;
  pipelines: Map<string, GPUComputePipeline>;
}

function planFor(kernel: Kernel): KernelPlan {
  const cached = plans.get(kernel);
  if (cached) return cached;
  const absentNames = new Set(kernel.absent ?? []);
  const absent = [...kernel.inputs, ...kernel.outputs].map((name) => absentNames.has(name));
  const entries: GPUBindGroupLayoutEntry[] = [];
  absent.forEach((isAbsent, i) => {
    if (!isAbsent) entries.push({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: i < kernel.inputs.length ? 'read-only-storage' : 'storage' } });
  });
  const bytes = paramsBytes(kernel);
  if (kernel.params.length) {
    entries.push({ binding: absent.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: bytes } });
  }
  const plan = { layout: gpu().device.createBindGroupLayout({ entries, label: kernel.name }), id: plans.size, absent, paramsBytes: bytes, pipelines: new Map() };
  plans.set(kernel, plan);
  return plan;
}

function pipelineFor(kernel: Kernel, plan: KernelPlan, constants: Record<string, number> | undefined): GPUComputePipeline {
  // The constants in the order the call wrote them (a spec writes them in one order; another order costs one more pipeline).
  let key = '';
  for (const name in constants) key += `${name}=${constants[name]},`;
  let p = plan.pipelines.get(key);
  if (p) return p;
  const { device } = gpu();
  const label = `${kernel.name}|${key}`;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: kernel.source, label: kernel.name });
  p = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [plan.layout], label: kernel.name }), label,
    compute: { module, entryPoint: 'main', constants: constants ?? {} },
  });
  device.popErrorScope().then((e) => {
    if (e) deferGpuError(new GpuError(`op '${kernel.name}': shader or pipeline rejected (variant ${label}): ${e.message}`));
  });
  plan.pipelines.set(key, p);
  return p;
}

function uniformAlign(): number { return Math.max(16, gpu().limits.minUniformBufferOffsetAlignment ?? 256); }

function writeParams(kernel: Kernel, bytes: number, params: Record<string, number> | undefined): number {
  let offset = Math.ceil(uniformUsed / uniformAlign()) * uniformAlign();
  if (offset + bytes > uniformStaging.byteLength) {
    // Bind groups recorded so far point at the current ring: submit them, then grow it.
    flush();
    offset = 0;
    uniformStaging = new ArrayBuffer(uniformStaging.byteLength * 2);
  }
  const view = new DataView(uniformStaging, offset, bytes);
  kernel.params.forEach(([name, type], i) => {
    const v = params?.[name];
    if (v === undefined || !Number.isFinite(v)) throw new GpuError(`op '${kernel.name}': parameter '${name}' is ${v}`);
    if (type === 'f32') view.setFloat32(i * 4, v, true);
    else if (type === 'i32') view.setInt32(i * 4, v, true);
    else view.setUint32(i * 4, v, true);
  });
  uniformUsed = offset + bytes;
  return offset;
}

/** The GPU side of the ring, as large as the staging side; a new one invalidates cached bind groups. */
function ensureUniformBuffer(): GPUBuffer {
  if (!uniformBuffer || uniformBufferBytes < uniformStaging.byteLength) {
    uniformBuffer?.destroy(); // after the submit that used it: destruction waits for the GPU
    uniformBufferBytes = uniformStaging.byteLength;
    uniformBuffer = gpu().device.createBuffer({ size: uniformBufferBytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform ring' });
    bindGroups.clear();
  }
  return uniformBuffer;
}

/** The bind group of these buffer ranges (null: an absent input or output), with the params ring at dynamic offset 0. */
function bindGroupFor(kernel: Kernel, plan: KernelPlan, bindings: (Binding | null)[]): GPUBindGroup {
  const ring = ensureUniformBuffer();
  let key = `${plan.id}|`;
  for (const b of bindings) key += b ? `${b.buf.id}:${b.offset}:${b.size},` : '-,';
  let g = bindGroups.get(key);
  if (g) return g;
  const { device } = gpu();
  const entries: GPUBindGroupEntry[] = [];
  bindings.forEach((b, i) => { if (b) entries.push({ binding: i, resource: { buffer: b.buf.buffer, offset: b.offset, size: b.size } }); });
  if (kernel.params.length) entries.push({ binding: bindings.length, resource: { buffer: ring, offset: 0, size: plan.paramsBytes } });
  device.pushErrorScope('validation');
  g = device.createBindGroup({ layout: plan.layout, entries, label: kernel.name });
  const shapes = bindings.map((b) => b?.size ?? 'absent').join(', ');
  device.popErrorScope().then((e) => {
    if (e) deferGpuError(new GpuError(`op '${kernel.name}': bindings rejected (binding sizes in bytes: ${shapes}): ${e.message}`));
  });
  if (bindGroups.size > 20000) bindGroups.clear(); // shapes change; keep the cache bounded
  bindGroups.set(key, g);
  return g;
}

/**
 * Records one dispatch; inputs then outputs, in the kernel's binding order, null exactly for the inputs and
 * outputs the kernel variant leaves out (kernel.absent).
 */
export function dispatch(call: KernelCall, inputs: (Binding | null)[], outputs: (Binding | null)[]): void {
  const { kernel } = call;
  const op = call.op ?? kernel.name;
  if (inputs.length !== kernel.inputs.length || outputs.length !== kernel.outputs.length)
    throw new GpuError(`op '${op}': expected ${kernel.inputs.length} inputs and ${kernel.outputs.length} outputs, got ${inputs.length} and ${outputs.length}`);
  const plan = planFor(kernel);
  const bindings = inputs.concat(outputs);
  for (let i = 0; i < bindings.length; i++) if ((bindings[i] === null) !== plan.absent[i]) throw bindingMismatch(op, kernel, i, bindings[i] === null);
  const [x, y = 1, z = 1] = call.workgroups;
  const maxW = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (x > maxW || y > maxW || z > maxW) throw new GpuError(`op '${op}': dispatch ${x}x${y}x${z} exceeds maxComputeWorkgroupsPerDimension ${maxW}`);
  const timed = ledger.timing && gpu().features.has('timestamp-query');
  if (timed && batch && batch.timedEntries.length >= MAX_TIMED) flush();
  const entry = ledger.record(op, call.cost);
  if (x === 0 || y === 0 || z === 0) return;
  setCurrentOp(op);
  const pipeline = pipelineFor(kernel, plan, call.constants);
  const uniformOffset = kernel.params.length ? writeParams(kernel, plan.paramsBytes, call.params) : 0;
  const group = bindGroupFor(kernel, plan, bindings);
  const dynamicOffsets = kernel.params.length ? [uniformOffset] : [];
  for (const b of bindings) if (b) b.buf.lastBatch = batchIndex;
  const b = openBatch();
  if (timed) {
    commandEncoder();
    const q = querySetFor();
    const i = b.timedEntries.length;
    const pass = b.encoder.beginComputePass({ timestampWrites: { querySet: q, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group, dynamicOffsets);
    pass.dispatchWorkgroups(x, y, z);
    pass.end();
    b.timedEntries.push(entry);
  } else {
    if (!b.pass) b.pass = b.encoder.beginComputePass();
    b.pass.setPipeline(pipeline);
    b.pass.setBindGroup(0, group, dynamicOffsets);
    b.pass.dispatchWorkgroups(x, y, z);
  }
  b.dispatches++;
}

/** The error for binding i given (or missing) where the kernel variant leaves it out (or reads or writes it). */
function bindingMismatch(op: string, kernel: Kernel, i: number, missing: boolean): GpuError {
  const isInput = i < kernel.inputs.length;
  const name = isInput ? kernel.inputs[i] : kernel.outputs[i - kernel.inputs.length];
  return new GpuError(`op '${op}': ${isInput ? 'input' : 'output'} '${name}' is ${missing ? 'missing' : 'given'}, but this kernel variant ${missing ? (isInput ? 'reads it' : 'writes it') : 'leaves it out'}`);
}

function querySetFor(): GPUQuerySet {
  if (!querySet) {
    const { device } = gpu();
    querySet = device.createQuerySet({ type: 'timestamp', count: 2 * MAX_TIMED });
    queryResolve = device.createBuffer({ size: 16 * MAX_TIMED, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }
  return querySet;
}

/** Submits everything recorded so far as one command buffer. Cheap when nothing is pending. */
export function flush(): void {
  const b = batch;
  if (!b) return;
  const { device } = gpu();
  if (b.pass) { b.pass.end(); b.pass = null; }
  let readTimes: GPUBuffer | null = null;
  const n = b.timedEntries.length;
  if (n > 0) {
    b.encoder.resolveQuerySet(querySet!, 0, 2 * n, queryResolve!, 0);
    readTimes = device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    b.encoder.copyBufferToBuffer(queryResolve!, 0, readTimes, 0, 16 * n);
  }
  if (uniformUsed > 0) device.queue.writeBuffer(ensureUniformBuffer(), 0, uniformStaging, 0, uniformUsed);
  device.pushErrorScope('validation');
  device.queue.submit([b.encoder.finish()]);
  submits++;
  awaitDevice(device.popErrorScope()).then((e) => {
    if (e) deferGpuError(new GpuError(`command batch of ${b.dispatches} dispatches rejected: ${e.message}`));
  });
  for (const s of stagingToDestroy.splice(0)) s.destroy(); // after submit: destruction waits for the GPU
  batch = null;
  batchIndex++;
  uniformUsed = 0;
  if (readTimes) {
    const entries = b.timedEntries;
    const rb = readTimes;
    pendingTimings.push(awaitDevice(rb.mapAsync(GPUMapMode.READ)).then(() => {
      const t = new BigUint64Array(rb.getMappedRange());
      entries.forEach((e, i) => { e.ns += Number(t[2 * i + 1] - t[2 * i]); e.timed += 1; });
      rb.unmap(); rb.destroy();
    }));
  }
}

/** Submits and waits for the GPU; throws any error that an op raised since the last sync. */
export async function sync(): Promise<void> {
  flush();
  await awaitDevice(gpu().device.queue.onSubmittedWorkDone());
  await Promise.all(pendingTimings.splice(0));
  // Error-scope promises resolve in order with the queue; give them one turn of the event loop.
  await new Promise((r) => setImmediate(r));
  throwIfGpuFailed();
}

/**
 * After a failed op: submits what was recorded before it and waits for the GPU, so that the device is released idle
 * (destroying it with work in flight can abort the process on lavapipe). Errors here are dropped: one is reported.
 */
export async function settle(): Promise<void> {
  try { await sync(); } catch { /* the first error is the one the caller reports */ }
}

/** Copies bytes out of the GPU (flushes first). */
export async function readBytes(b: Binding): Promise<ArrayBuffer> {
  const size = Math.ceil(b.size / 4) * 4;
  const staging = readBackBuffer(size);
  commandEncoder().copyBufferToBuffer(b.buf.buffer, b.offset, staging, 0, size);
  await sync();
  await awaitDevice(staging.mapAsync(GPUMapMode.READ, 0, size));
  const out = staging.getMappedRange(0, size).slice(0);
  staging.unmap();
  readBackBuffers.set(staging.size, staging);
  throwIfGpuFailed();
  return out;
}

// One mappable buffer per size class, reused: a training step's loss read-back allocates nothing.
const readBackBuffers = new Map<number, GPUBuffer>();
onGpuRelease(() => readBackBuffers.clear());

function readBackBuffer(size: number): GPUBuffer {
  const cls = sizeClass(size);
  const cached = readBackBuffers.get(cls);
  if (cached) { readBackBuffers.delete(cls); return cached; } // taken while in use: concurrent reads get their own
  return gpu().device.createBuffer({ size: cls, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'read-back' });
}

/** Writes bytes into a buffer range, in order with the commands already recorded. */
export function writeBytes(b: Binding, data: ArrayBufferView): void {
  const { device } = gpu();
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const padded = bytes.byteLength % 4 === 0 ? bytes : (() => { const p = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4); p.set(bytes); return p; })();
  if (b.buf.lastBatch !== batchIndex) {
    // The pending batch does not touch this buffer, so writing ahead of it on the queue is safe.
    device.queue.writeBuffer(b.buf.buffer, b.offset, padded);
    return;
  }
  // The pending batch still reads this buffer (it was freed and reused): stage and copy in order.
  const staging = device.createBuffer({ size: padded.byteLength, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
  new Uint8Array(staging.getMappedRange()).set(padded);
  staging.unmap();
  commandEncoder().copyBufferToBuffer(staging, 0, b.buf.buffer, b.offset, padded.byteLength);
  stagingToDestroy.push(staging); // a buffer destroyed before its submit would fail validation
}

/** Zero-fills a buffer range in order with the recorded commands. */
export function clearBytes(b: Binding): void {
  b.buf.lastBatch = batchIndex;
  commandEncoder().clearBuffer(b.buf.buffer, b.offset, Math.ceil(b.size / 4) * 4);
}

/** Destroys the pool's free buffers; cached bind groups may name them, so they go too. */
export function trimPool(): void {
  flush();
  bindGroups.clear();
  pool.trim();
}

export function pipelineCount(): number { let n = 0; for (const plan of plans.values()) n += plan.pipelines.size; return n; }

/** Queue submissions so far: a training step should add exactly one. */
export function submitCount(): number { return submits; }
