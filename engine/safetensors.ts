// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: 8-byte little-endian u64 header length N, N bytes of JSON header
//   { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }
// then the data section; data_offsets are relative to the start of the data section.
//
// Tensors are read one at a time with positioned reads on a file descriptor, so files over
// 2 GiB work and the whole file is never held in memory. Typed arrays are used in the host's
// byte order, which is little-endian on every platform Node and Dawn run on (checked below).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type DType } from '../kernels/dtype.ts';

/**
 * Every byte-sized dtype a file may hold (the file format's names). read() converts and writeSafetensors() writes
 * those in SUPPORTED; the others are accepted on open (so a checkpoint with, say, a BOOL mask buffer still opens
 * and validates) and are reachable with readRaw(). juice's own names (kernels/dtype.ts) meet these only at the file
 * boundary: toDType() and fromDType().
 */
export type SafetensorsDType =
  | 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'F64'
  | 'BOOL' | 'I8' | 'I16' | 'U16' | 'U32' | 'U64'
  | 'F8_E4M3' | 'F8_E5M2' | 'F8_E8M0';

const DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1,
  BOOL: 1, I8: 1, I16: 2, U16: 2, U32: 4, U64: 8, F64: 8,
  F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
};

/** The dtypes that read() converts and writeSafetensors() writes. */
const SUPPORTED: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'F64'];
// BOOL is one byte of 0/1, so it reads as a Uint8Array for free.
const READABLE: ReadonlySet<SafetensorsDType> = new Set<SafetensorsDType>([...SUPPORTED, 'BOOL']);

/** Byte size of one element of a dtype. */
export function dtypeSize(dtype: SafetensorsDType): number {
  return DTYPE_SIZE[dtype];
}

const TO_DTYPE: Partial<Record<SafetensorsDType, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U32: 'u32' };

/** juice's dtype for a file's (null where a tensor of that dtype has no juice equivalent, e.g. I64 or F64). */
export function toDType(dtype: SafetensorsDType): DType | null { return TO_DTYPE[dtype] ?? null; }

/** The file's name for one of juice's dtypes. */
export function fromDType(dtype: DType): SafetensorsDType {
  const found = (Object.keys(TO_DTYPE) as SafetensorsDType[]).find((k) => TO_DTYPE[k] === dtype);
  if (!found) throw new Error(`unreachable: dtype ${dtype}`);
  return found;
}

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range [begin, end) in the file. */
  begin: number;
  end: number;
}

export type TensorData = Float32Array | Int32Array | Uint8Array | Float64Array;

export interface LoadedTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorData;
}

export interface TensorToWrite {
  /** Defaults from the array type: Float32Array→F32, Float64Array→F64, Int32Array→I32, Uint8Array→U8, BigInt64Array→I64. */
  dtype?: SafetensorsDType;
  shape: number[];
  /**
   * F16/BF16: a Float32Array (converted, round to nearest even) or a Uint16Array of raw bits.
   * I64: a BigInt64Array or an Int32Array (widened). F64: a Float64Array.
   */
  data: Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array | BigInt64Array;
}

/** Every error this module raises about a file's contents; the message names the file. */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, message: string, tensor?: string) {
    super(`${file}: ${tensor !== undefined ? `tensor ${JSON.stringify(tensor)}: ` : ''}${message}`);
    this.name = 'SafetensorsError';
    this.file = file;
    this.tensor = tensor;
  }
}

// The official implementation refuses headers above 100 MB; a bigger one is a corrupt length.
const MAX_HEADER_BYTES = 100_000_000;
// One read()/write() syscall moves at most ~2 GiB on Linux, so large tensors go in chunks.
const IO_CHUNK = 1 << 30;

function checkLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported');
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 200 ? s.slice(0, 200) + '...' : s;
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Product of dims, or undefined if it is not a safe integer (absurd shapes in corrupt files). */
function numel(shape: number[]): number | undefined {
  let n = 1;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Positioned read that fills `dst` completely (looping over short reads and 1 GiB chunks). */
function readFully(fd: number, dst: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, Math.min(IO_CHUNK, dst.length - done), position + done);
    if (n === 0) {
      throw new SafetensorsError(
        file, `unexpected end of file reading ${what} at byte ${position + done} (file changed since open?)`);
    }
    done += n;
  }
}

function writeFully(fd: number, src: Uint8Array): void {
  let done = 0;
  while (done < src.length) {
    done += fs.writeSync(fd, src, done, Math.min(IO_CHUNK, src.length - done));
  }
}

// ---------------------------------------------------------------------------------------------
// Header parsing

interface ParsedHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function parseHeader(file: string, json: unknown, dataStart: number, dataLength: number): ParsedHeader {
  if (!isPlainObject(json)) {
    throw new SafetensorsError(file, `header is not a JSON object (got ${show(json)})`);
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) {
        throw new SafetensorsError(file, `__metadata__ must be an object of strings, got ${show(entry)}`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          throw new SafetensorsError(file, `__metadata__[${JSON.stringify(k)}] must be a string, got ${show(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    if (!isPlainObject(entry)) {
      throw new SafetensorsError(file, `header entry must be an object, got ${show(entry)}`, name);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZE, dtype)) {
      throw new SafetensorsError(
        file, `unknown dtype ${show(dtype)} (known: ${Object.keys(DTYPE_SIZE).join(', ')})`, name);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `shape must be an array of non-negative integers, got ${show(shape)}`, name);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      throw new SafetensorsError(
        file, `data_offsets must be two non-negative integers [begin, end] with begin <= end, got ${show(offsets)}`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      throw new SafetensorsError(
        file, `data_offsets ${show(offsets)} run past the end of the data section (${dataLength} bytes)`, name);
    }
    const size = DTYPE_SIZE[dtype as SafetensorsDType];
    const count = numel(shape);
    const expected = count === undefined ? undefined : count * size;
    if (expected !== end - begin) {
      throw new SafetensorsError(
        file,
        `shape ${show(shape)} x ${dtype} (${size} bytes) needs ${expected ?? 'an absurd number of'} bytes ` +
          `but data_offsets ${show(offsets)} hold ${end - begin} bytes`,
        name);
    }
    tensors.set(name, { name, dtype: dtype as SafetensorsDType, shape: shape.slice(), begin: dataStart + begin, end: dataStart + end });
  }

  // Overlap check: sort by start; empty tensors occupy no bytes and cannot overlap anything.
  // Until the first overlap the intervals are disjoint, so comparing neighbours is enough.
  // (Unlike the official reader we tolerate gaps between tensors; they are harmless to us.)
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.begin < a.end) {
      const rel = (t: TensorInfo) => `[${t.begin - dataStart}, ${t.end - dataStart}]`;
      throw new SafetensorsError(
        file, `tensors ${JSON.stringify(a.name)} ${rel(a)} and ${JSON.stringify(b.name)} ${rel(b)} overlap`);
    }
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Conversion of raw bytes to the arrays read() returns

function convert(file: string, info: TensorInfo, raw: Uint8Array): TensorData {
  // `raw` is always a fresh buffer at offset 0, so any typed-array view of it is aligned.
  const buf = raw.buffer;
  const n = raw.length / DTYPE_SIZE[info.dtype];
  switch (info.dtype) {
    case 'F32': return new Float32Array(buf, 0, n);
    case 'F64': return new Float64Array(buf, 0, n);
    case 'I32': return new Int32Array(buf, 0, n);
    case 'U8':
    case 'BOOL': return raw;
    case 'F16': return f16ToF32(new Uint16Array(buf, 0, n));
    case 'BF16': return bf16ToF32(new Uint16Array(buf, 0, n));
    case 'I64': {
      // An int64 fits in int32 iff its high word is the sign extension of its low word.
      const words = new Int32Array(buf, 0, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i]!;
        if (words[2 * i + 1] !== lo >> 31) {
          const value = new BigInt64Array(buf, 0, n)[i]!;
          throw new SafetensorsError(
            file, `I64 value ${value} at index ${i} does not fit in int32; use readI64() for BigInt64Array`, info.name);
        }
        out[i] = lo;
      }
      return out;
    }
    default:
      throw new Error(`unreachable: dtype ${info.dtype}`); // read() checks READABLE first
  }
}

// ---------------------------------------------------------------------------------------------
// Single file

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  /** Byte offset of the data section (8 + header length). */
  readonly dataStart: number;
  private fd: number | undefined;

  private constructor(file: string, fd: number, header: ParsedHeader, dataStart: number) {
    this.path = file;
    this.fd = fd;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
    this.dataStart = dataStart;
  }

  /** Opens and validates the header; the descriptor stays open until close(). */
  static open(file: string): SafetensorsFile {
    checkLittleEndian();
    const fd = fs.openSync(file, 'r');
    try {
      const fileSize = fs.fstatSync(fd).size;
      if (fileSize < 8) {
        throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
      }
      const prefix = Buffer.alloc(8);
      readFully(fd, prefix, 0, file, 'the header length');
      const n64 = prefix.readBigUInt64LE(0);
      if (n64 > BigInt(fileSize - 8)) {
        throw new SafetensorsError(
          file, `header length ${n64} runs past the end of the file (${fileSize} bytes, ${fileSize - 8} after the length)`);
      }
      const n = Number(n64);
      if (n > MAX_HEADER_BYTES) {
        throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      }
      const headerBytes = Buffer.alloc(n);
      readFully(fd, headerBytes, 8, file, 'the header');
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
      } catch (e) {
        throw new SafetensorsError(file, `header is not valid JSON: ${(e as Error).message}`);
      }
      const dataStart = 8 + n;
      return new SafetensorsFile(file, fd, parseHeader(file, json, dataStart, fileSize - dataStart), dataStart);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, 'no such tensor in this file', name);
    return t;
  }

  /** The tensor's bytes as stored, in a fresh buffer at offset 0 (safe to view as any typed array). */
  readRaw(name: string): Uint8Array {
    const t = this.info(name);
    if (this.fd === undefined) throw new SafetensorsError(this.path, 'file is closed', name);
    const bytes = new Uint8Array(t.end - t.begin);
    readFully(this.fd, bytes, t.begin, this.path, `tensor ${JSON.stringify(name)}`);
    return bytes;
  }

  /** F32/F16/BF16 -> Float32Array, I32/I64 -> Int32Array (I64 only if every value fits), U8/BOOL -> Uint8Array. */
  read(name: string): TensorData {
    const t = this.info(name);
    if (!READABLE.has(t.dtype)) {
      throw new SafetensorsError(
        this.path, `dtype ${t.dtype} is not supported by read() (supported: ${[...READABLE].join(', ')}); use readRaw()`, name);
    }
    return convert(this.path, t, this.readRaw(name));
  }

  /** An I64 tensor as a BigInt64Array, without range checks. */
  readI64(name: string): BigInt64Array {
    const t = this.info(name);
    if (t.dtype !== 'I64') throw new SafetensorsError(this.path, `readI64() needs dtype I64, got ${t.dtype}`, name);
    const raw = this.readRaw(name);
    return new BigInt64Array(raw.buffer, 0, raw.length / 8);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Reads every tensor of a (small) file into memory. */
export function readSafetensors(file: string): Map<string, LoadedTensor> {
  const f = SafetensorsFile.open(file);
  try {
    const out = new Map<string, LoadedTensor>();
    for (const t of f.tensors.values()) out.set(t.name, { dtype: t.dtype, shape: t.shape.slice(), data: f.read(t.name) });
    return out;
  } finally {
    f.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

/** The bytes to store for one tensor, after dtype defaulting and 16-bit/64-bit conversion. */
function encodeTensor(file: string, name: string, t: TensorToWrite): { dtype: SafetensorsDType; bytes: Uint8Array } {
  const { data } = t;
  let dtype: SafetensorsDType | undefined = t.dtype;
  if (dtype === undefined) {
    if (data instanceof Float32Array) dtype = 'F32';
    else if (data instanceof Float64Array) dtype = 'F64';
    else if (data instanceof Int32Array) dtype = 'I32';
    else if (data instanceof Uint8Array) dtype = 'U8';
    else if (data instanceof BigInt64Array) dtype = 'I64';
    else throw new SafetensorsError(file, `dtype is required for ${data.constructor.name} data (F16 or BF16 bits?)`, name);
  }
  if (!SUPPORTED.includes(dtype)) throw new SafetensorsError(file, `cannot write dtype ${show(dtype)}`, name);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(file, `shape must be an array of non-negative integers, got ${show(t.shape)}`, name);
  }
  const count = numel(t.shape);
  if (count !== data.length) {
    throw new SafetensorsError(
      file, `shape ${show(t.shape)} has ${count ?? 'too many'} elements but the data has ${data.length}`, name);
  }
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let out: ArrayBufferView | undefined;
  switch (dtype) {
    case 'F32': if (data instanceof Float32Array) out = data; break;
    case 'F64': if (data instanceof Float64Array) out = data; break;
    case 'I32': if (data instanceof Int32Array) out = data; break;
    case 'U8': if (data instanceof Uint8Array) out = data; break;
    case 'F16':
      if (data instanceof Uint16Array) out = data;
      else if (data instanceof Float32Array) out = f32ToF16(data);
      break;
    case 'BF16':
      if (data instanceof Uint16Array) out = data;
      else if (data instanceof Float32Array) out = f32ToBf16(data);
      break;
    case 'I64':
      if (data instanceof BigInt64Array) out = data;
      else if (data instanceof Int32Array) out = BigInt64Array.from(data, (v) => BigInt(v));
      break;
  }
  if (!out) throw new SafetensorsError(file, `cannot write ${data.constructor.name} data as ${dtype}`, name);
  return { dtype, bytes: bytesOf(out) };
}

/**
 * Writes a safetensors file atomically: to `file.tmp-<pid>`, fsync, then rename over `file`,
 * so a crash leaves either the old file or the complete new one.
 */
export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  checkLittleEndian();
  const encoded = Object.entries(tensors).map(([name, t]) => {
    if (name === '__metadata__') throw new SafetensorsError(file, '"__metadata__" is reserved and cannot name a tensor');
    return { name, ...encodeTensor(file, name, t) };
  });
  // Same order as the official writer: larger dtypes first (keeps every tensor aligned to its
  // element size in the file), then by name.
  encoded.sort((a, b) => DTYPE_SIZE[b.dtype] - DTYPE_SIZE[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(file, `metadata[${JSON.stringify(k)}] must be a string, got ${show(v)}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of encoded) {
    header[t.name] = { dtype: t.dtype, shape: tensors[t.name]!.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  // Pad the JSON with spaces to a multiple of 8 so the data section starts 8-aligned.
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));

  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    writeFully(fd, prefix);
    writeFully(fd, json);
    for (const t of encoded) writeFully(fd, t.bytes);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // Make the rename itself durable; not every platform can fsync a directory, which is fine.
  try {
    const dfd = fs.openSync(path.dirname(file), 'r');
    try { fs.fsyncSync(dfd); } finally { fs.closeSync(dfd); }
  } catch { /* best effort */ }
}

// ---------------------------------------------------------------------------------------------
// Folders: a single model.safetensors, or shards listed by model.safetensors.index.json

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export class SafetensorsFolder {
  /** The folder (or the file it was opened from). */
  readonly path: string;
  /** The open files: one, or one per shard. */
  readonly files: SafetensorsFile[];
  /** The file's __metadata__, or the index's "metadata" (its values need not be strings). */
  readonly metadata: Record<string, unknown>;
  private readonly where: Map<string, SafetensorsFile>;

  private constructor(where: string, files: SafetensorsFile[], metadata: Record<string, unknown>, map: Map<string, SafetensorsFile>) {
    this.path = where;
    this.files = files;
    this.metadata = metadata;
    this.where = map;
  }

  /**
   * Opens `dir/model.safetensors` if present, else `dir/model.safetensors.index.json` and its
   * shards. `dir` may also name a .safetensors file or an index .json file directly.
   */
  static open(dir: string): SafetensorsFolder {
    if (fs.statSync(dir).isFile()) {
      return dir.endsWith('.json') ? SafetensorsFolder.openIndex(dir) : SafetensorsFolder.openSingle(dir);
    }
    const single = path.join(dir, SINGLE_FILE);
    if (fs.existsSync(single)) return SafetensorsFolder.openSingle(single);
    const index = path.join(dir, INDEX_FILE);
    if (fs.existsSync(index)) return SafetensorsFolder.openIndex(index);
    throw new SafetensorsError(dir, `neither ${SINGLE_FILE} nor ${INDEX_FILE} found in this folder`);
  }

  private static openSingle(file: string): SafetensorsFolder {
    const f = SafetensorsFile.open(file);
    return new SafetensorsFolder(file, [f], f.metadata, new Map(f.names().map((n) => [n, f])));
  }

  private static openIndex(indexPath: string): SafetensorsFolder {
    let index: unknown;
    try {
      index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    } catch (e) {
      throw new SafetensorsError(indexPath, `index is not valid JSON: ${(e as Error).message}`);
    }
    if (!isPlainObject(index) || !isPlainObject(index.weight_map)) {
      throw new SafetensorsError(indexPath, 'index must be a JSON object with a "weight_map" object');
    }
    const metadata = isPlainObject(index.metadata) ? index.metadata : {};
    const dir = path.dirname(indexPath);
    const byShard = new Map<string, string[]>(); // shard file name -> tensor names the index puts there
    for (const [name, shard] of Object.entries(index.weight_map)) {
      // Shards live beside the index; refuse names that would point elsewhere.
      if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
        throw new SafetensorsError(indexPath, `weight_map entry is not a shard file name: ${show(shard)}`, name);
      }
      const list = byShard.get(shard);
      if (list) list.push(name); else byShard.set(shard, [name]);
    }

    const files: SafetensorsFile[] = [];
    try {
      const map = new Map<string, SafetensorsFile>();
      const owner = new Map<string, SafetensorsFile>(); // every tensor any shard holds -> its shard
      for (const [shard, names] of byShard) {
        const shardPath = path.join(dir, shard);
        if (!fs.existsSync(shardPath)) {
          throw new SafetensorsError(indexPath, `shard ${shardPath} named by the index does not exist (needed for ${show(names[0])})`);
        }
        const f = SafetensorsFile.open(shardPath);
        files.push(f);
        for (const n of f.names()) {
          const other = owner.get(n);
          if (other) {
            throw new SafetensorsError(indexPath, `appears in two shards: ${other.path} and ${f.path}`, n);
          }
          owner.set(n, f);
        }
        for (const n of names) {
          if (!f.has(n)) {
            throw new SafetensorsError(indexPath, `the index maps it to ${f.path}, which has no such tensor`, n);
          }
          map.set(n, f);
        }
      }
      // Tensors a shard holds but the index does not list are ignored: the index is authoritative.
      return new SafetensorsFolder(indexPath, files, metadata, map);
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** The file that holds a tensor. */
  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(this.path, 'no such tensor', name);
    return f;
  }

  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }

  read(name: string): TensorData {
    return this.fileOf(name).read(name);
  }

  readRaw(name: string): Uint8Array {
    return this.fileOf(name).readRaw(name);
  }

  readI64(name: string): BigInt64Array {
    return this.fileOf(name).readI64(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
