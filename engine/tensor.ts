// GPU tensors: shape, dtype, a pooled buffer shared by views, and explicit lifetimes (dispose, tidy).
import { GpuError } from './gpu.ts';
import { ledger } from './ledger.ts';
import { bf16ToF32, bytesPerElement, f16ToF32, f32ToBf16, f32ToF16, storageBytes, type DType, type HalfDType } from '../kernels/dtype.ts';
import { pool, type PooledBuffer } from './pool.ts';
import { clearBytes, readBytes, writeBytes, type Binding } from './runtime.ts';

export type TypedArray = Float32Array | Int32Array | Uint32Array;

/** A pooled buffer and the number of live tensors (views included) that use it. */
class Storage {
  refs = 1;
  constructor(readonly buf: PooledBuffer) {}
  release(): void { if (--this.refs === 0) pool.release(this.buf); }
}

/** Tensors created inside tidy() are disposed at its end unless returned or kept. */
const scopes: Set<Tensor>[] = [];
let nextId = 1;

export function numelOf(shape: readonly number[]): number { return shape.reduce((a, b) => a * b, 1); }

export function shapeString(shape: readonly number[]): string { return `[${shape.join(', ')}]`; }

export class Tensor {
  readonly id = nextId++;
  readonly numel: number;
  requiresGrad = false;
  /** Accumulated gradient of a leaf (parameter); set by backward(). */
  grad: Tensor | null = null;
  /** True when the tape produced this tensor (it is not a leaf). */
  hasProducer = false;
  name = '';
  private creatorHolds = true;
  private extraRefs = 0;

  constructor(readonly shape: readonly number[], readonly dtype: DType, private readonly storage: Storage, readonly offset = 0) {
    for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new GpuError(`invalid tensor shape ${shapeString(shape)}`);
    this.numel = numelOf(shape);
    scopes[scopes.length - 1]?.add(this);
  }

  static empty(shape: readonly number[], dtype: DType = 'f32', what = 'tensor'): Tensor {
    const bytes = Math.max(4, storageBytes(numelOf(shape), dtype));
    return new Tensor(shape, dtype, new Storage(pool.acquire(bytes, `${what} ${dtype} ${shapeString(shape)}`)));
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const t = Tensor.empty(shape, dtype, 'zeros');
    clearBytes(t.binding());
    ledger.record('zeros', { flops: 0, bytesRead: 0, bytesWritten: t.bytes });
    return t;
  }

  static fromArray(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const n = numelOf(shape);
    if (data.length !== n) throw new GpuError(`fromArray: ${data.length} values for shape ${shapeString(shape)} (${n} elements)`);
    const t = Tensor.empty(shape, dtype, 'upload');
    if (n > 0) writeBytes(t.binding(), toStorage(data, dtype));
    return t;
  }

  /** A 16-bit tensor from its raw bits (e.g. read straight from a safetensors file). */
  static fromBits(bits: Uint16Array, shape: readonly number[], dtype: HalfDType): Tensor {
    if (bits.length !== numelOf(shape)) throw new GpuError(`fromBits: ${bits.length} values for shape ${shapeString(shape)}`);
    const t = Tensor.empty(shape, dtype, 'upload');
    if (bits.length > 0) writeBytes(t.binding(), bits);
    return t;
  }

  static scalar(value: number): Tensor { return Tensor.fromArray([value], []); }

  get bytes(): number { return storageBytes(this.numel, this.dtype); }
  get rank(): number { return this.shape.length; }
  get alive(): boolean { return this.creatorHolds || this.extraRefs > 0; }

  /** The buffer range a kernel binds. */
  binding(): Binding {
    if (!this.alive) throw new GpuError(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} ${shapeString(this.shape)} used after dispose`);
    return { buf: this.storage.buf, offset: this.offset * bytesPerElement(this.dtype), size: Math.max(4, this.bytes) };
  }

  /** A view with another shape over the same contiguous data. */
  reshape(shape: readonly number[]): Tensor {
    const s = [...shape];
    const infer = s.indexOf(-1);
    if (infer >= 0) s[infer] = this.numel / numelOf(s.filter((_, i) => i !== infer));
    if (numelOf(s) !== this.numel) throw new GpuError(`reshape ${shapeString(this.shape)} -> ${shapeString(shape)}: element counts differ`);
    this.binding(); // checks alive
    this.storage.refs++;
    return new Tensor(s, this.dtype, this.storage, this.offset);
  }

  /**
   * A view of rows [first, first + count) of dim 0 (e.g. a window of a table larger than one binding). Its byte
   * offset must meet the device's storage-offset alignment when a kernel binds it (launch() checks).
   */
  rows(first: number, count: number): Tensor {
    const rows = this.shape[0];
    if (this.rank === 0 || !(Number.isInteger(first) && Number.isInteger(count) && first >= 0 && count >= 0 && first + count <= rows))
      throw new GpuError(`rows: [${first}, ${first + count}) of ${shapeString(this.shape)}`);
    this.binding(); // checks alive
    this.storage.refs++;
    return new Tensor([count, ...this.shape.slice(1)], this.dtype, this.storage, this.offset + first * (this.numel / rows));
  }

  /** Overwrites the contents from host data, in order with recorded commands. */
  write(data: ArrayLike<number>): void {
    if (data.length !== this.numel) throw new GpuError(`write: ${data.length} values into ${shapeString(this.shape)}`);
    writeBytes(this.binding(), toStorage(data, this.dtype));
  }

  /** The values on the host; 16-bit storage comes back widened to f32. */
  async toArray(): Promise<TypedArray> {
    const bytes = this.numel === 0 ? new ArrayBuffer(8) : await readBytes(this.binding());
    if (this.dtype === 'i32') return new Int32Array(bytes, 0, this.numel);
    if (this.dtype === 'u32') return new Uint32Array(bytes, 0, this.numel);
    if (this.dtype === 'f16') return f16ToF32(new Uint16Array(bytes, 0, this.numel));
    if (this.dtype === 'bf16') return bf16ToF32(new Uint16Array(bytes, 0, this.numel));
    return new Float32Array(bytes, 0, this.numel);
  }

  async item(): Promise<number> {
    if (this.numel !== 1) throw new GpuError(`item() on a tensor of shape ${shapeString(this.shape)}`);
    return (await this.toArray())[0];
  }

  /** True when no other tensor (a view) shares this tensor's memory. */
  ownsStorage(): boolean { return this.storage.refs === 1; }

  /** Another owner (the tape, a module) holds this tensor until it calls release(). */
  retain(): this { this.binding(); this.extraRefs++; return this; }

  release(): void {
    if (this.extraRefs <= 0) throw new GpuError(`tensor #${this.id} released more often than retained`);
    this.extraRefs--;
    if (!this.alive) this.storage.release();
  }

  /** Drops the creator's hold; idempotent. The memory returns to the pool once no owner is left. */
  dispose(): void {
    if (!this.creatorHolds) return;
    this.creatorHolds = false;
    if (!this.alive) this.storage.release();
  }

  /** Keeps this tensor past the end of the enclosing tidy(). */
  keep(): this {
    for (const s of scopes) s.delete(this);
    return this;
  }
}

/** Host values in a dtype's storage layout (16-bit formats rounded to nearest even). */
function toStorage(data: ArrayLike<number>, dtype: DType): ArrayBufferView {
  switch (dtype) {
    case 'f32': return data instanceof Float32Array ? data : Float32Array.from(data);
    case 'i32': return data instanceof Int32Array ? data : Int32Array.from(data);
    case 'u32': return data instanceof Uint32Array ? data : Uint32Array.from(data);
    case 'f16': return f32ToF16(data instanceof Float32Array ? data : Float32Array.from(data));
    case 'bf16': return f32ToBf16(data instanceof Float32Array ? data : Float32Array.from(data));
  }
}

/** Runs fn; disposes every tensor it created except those in its result (a tensor, array or object of tensors). */
export function tidy<T>(fn: () => T): T {
  const scope = openScope();
  try {
    const result = fn();
    closeScope(scope, result);
    return result;
  } catch (e) {
    closeScope(scope, undefined);
    throw e;
  }
}

/** The async form, for code that awaits (e.g. reads a loss) inside the scope. */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const scope = openScope();
  try {
    const result = await fn();
    closeScope(scope, result);
    return result;
  } catch (e) {
    closeScope(scope, undefined);
    throw e;
  }
}

function openScope(): Set<Tensor> {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  return scope;
}

function closeScope(scope: Set<Tensor>, result: unknown): void {
  const i = scopes.lastIndexOf(scope);
  if (i >= 0) scopes.splice(i, 1);
  const kept = new Set<Tensor>();
  collectTensors(result, kept);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
}

function collectTensors(v: unknown, into: Set<Tensor>): void {
  if (v instanceof Tensor) into.add(v);
  else if (Array.isArray(v)) for (const x of v) collectTensors(x, into);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectTensors(x, into);
}
