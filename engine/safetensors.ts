// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: 8-byte little-endian u64 header length N, N bytes of JSON header
//   { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }
// then the data section; data_offsets are relative to the start of the data section.
//
// Tensors are read one at a time with positioned reads on a file descriptor, so files over
// 2 GiB work and the whole file is never held in memory. Typed arrays are used in the host's
// byte order, which is little-endian on every platform Node and Dawn run on (checked below).

import { constants as bufferConstants } from 'node:buffer';
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

function isLink(p: string): boolean {
  try { return fs.lstatSync(p).isSymbolicLink(); } catch { return false; }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Strict JSON for headers and indexes
//
// JSON.parse lets the last of two equal keys win silently, reads 32768.0 and 1e2 as integers, and quotes the text
// it failed on in its message. The reference reader (serde_json into typed structs) refuses the first two, so
// headers and indexes are read with this small parser instead: RFC 8259 grammar, duplicate keys refused at any
// depth, the first number token written with a fraction or an exponent reported (the caller decides whether it
// may be one), nesting bounded, and errors that give the key path and a position, never the text.

export type JsonPath = (string | number)[];

/** `a.b[0]` for a path (keys JSON-quoted when they are not identifiers). */
export function jsonPathString(p: JsonPath): string {
  return p.map((k, i) => typeof k === 'number' ? `[${k}]`
    : /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? (i === 0 ? k : `.${k}`) : `[${JSON.stringify(k.slice(0, 100))}]`).join('');
}

/** Why a text is not strict JSON: where (the key path and the character offset) and why; it quotes no text. */
export class StrictJsonError extends Error {
  constructor(readonly path: JsonPath, readonly at: number, readonly reason: string) {
    super(`${reason}${path.length > 0 ? ` at ${jsonPathString(path)}` : ''} (character ${at})`);
    this.name = 'StrictJsonError';
  }
}

export interface StrictJson {
  value: unknown;
  /** The number tokens with a fraction or an exponent (32768.0, 1e2), and where, in text order. */
  nonIntegers: { path: JsonPath; token: string }[];
}

const MAX_JSON_DEPTH = 64;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Parses `text` as one JSON value with optional surrounding whitespace. Objects are plain objects whose keys are
 * own data properties (a "__proto__" key is an ordinary key). Throws StrictJsonError.
 */
export function parseStrictJson(text: string): StrictJson {
  let i = 0;
  const at: JsonPath = [];
  const nonIntegers: StrictJson['nonIntegers'] = [];
  const fail = (reason: string, pos = i): never => { throw new StrictJsonError(at.slice(), pos, reason); };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++; else return;
    }
  };
  const literal = (word: string, value: unknown) => {
    if (!text.startsWith(word, i)) fail('unexpected character');
    i += word.length;
    return value;
  };
  const string = (): string => {
    const start = i++; // the opening quote
    let out = '';
    let run = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string', start);
      const c = text.charCodeAt(i);
      if (c === 0x22) { out += text.slice(run, i); i++; return out; }
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) { i++; continue; }
      out += text.slice(run, i);
      const e = text[i + 1];
      if (e !== undefined && Object.hasOwn(ESCAPES, e)) { out += ESCAPES[e]; i += 2; }
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) { out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16)); i += 6; }
      else fail('invalid escape in a string');
      run = i;
    }
  };
  const number = (): number => {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail('invalid number');
    if (m[1] !== undefined || m[2] !== undefined) nonIntegers.push({ path: at.slice(), token: m[0].slice(0, 40) });
    i += m[0].length;
    return Number(m[0]);
  };
  const value = (depth: number): unknown => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const keyAt = i;
        const key = string();
        if (Object.hasOwn(obj, key)) { at.push(key); fail('duplicate key (JSON.parse would keep the last one silently)', keyAt); }
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        at.push(key);
        Object.defineProperty(obj, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        at.pop();
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        at.push(arr.length);
        arr.push(value(depth + 1));
        at.pop();
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    return fail(c === undefined ? 'unexpected end of text' : 'unexpected character');
  };
  const value0 = value(0);
  ws();
  if (i < text.length) fail('unexpected text after the JSON value');
  return { value: value0, nonIntegers };
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

/**
 * The reference reader's rules (huggingface/safetensors `Metadata::validate`): every entry has a known dtype, a shape
 * and [begin, end] offsets of integers, written as integers; each tensor's byte length is numel x dtype size; and the
 * tensors, sorted by offsets, tile the data section exactly: the first begins at 0, each begins where the previous
 * ends, the last ends at the end of the file. No byte of the data section belongs to no tensor or to two.
 */
function parseHeader(file: string, header: StrictJson, dataStart: number, dataLength: number): ParsedHeader {
  const json = header.value;
  if (!isPlainObject(json)) {
    throw new SafetensorsError(file, `header is not a JSON object (got ${show(json)})`);
  }
  if (header.nonIntegers.length > 0) {
    // Only shapes and data_offsets hold numbers (metadata values are strings), and both are integers.
    const { path: where, token } = header.nonIntegers[0];
    const [name, field] = where;
    const entry = typeof name === 'string' && isPlainObject(json[name]) ? json[name] : undefined;
    const rule = field === 'shape' ? 'shape must be an array of non-negative integers'
      : field === 'data_offsets' ? 'data_offsets must be two non-negative integers [begin, end]'
        : 'numbers in a header must be integers';
    throw new SafetensorsError(
      file,
      `${rule}: ${token} at ${jsonPathString(where.slice(1))} is written with a fraction or an exponent` +
        (entry && typeof field === 'string' ? ` (got ${show(entry[field])})` : ''),
      typeof name === 'string' && name !== '__metadata__' ? name : undefined);
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

  // Tiling: sorted by (begin, end) as the reference sorts, each tensor starts where the previous one ended.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  const rel = (t: TensorInfo) => `[${t.begin - dataStart}, ${t.end - dataStart}]`;
  let covered = 0;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i]!;
    const begin = t.begin - dataStart;
    if (begin < covered) {
      const prev = sorted[i - 1]!;
      throw new SafetensorsError(
        file, `tensors ${JSON.stringify(prev.name)} ${rel(prev)} and ${JSON.stringify(t.name)} ${rel(t)} overlap ` +
          '(the data section must be tiled by the tensors, each starting where the previous one ends)', t.name);
    }
    if (begin > covered) {
      throw new SafetensorsError(
        file, `data_offsets ${rel(t)} leave bytes [${covered}, ${begin}) of the data section unused ` +
          `(${i === 0 ? 'the first tensor must begin at 0' : `the previous tensor ${JSON.stringify(sorted[i - 1]!.name)} ends at ${covered}`}; ` +
          'the data section must be tiled by the tensors)', t.name);
    }
    covered = t.end - dataStart;
  }
  if (covered !== dataLength) {
    throw new SafetensorsError(
      file, `the tensors cover ${covered} of the ${dataLength} bytes after the header, leaving ${dataLength - covered} unused at the end ` +
        '(the data section must end with the last tensor; is the header length right?)',
      sorted.length > 0 ? sorted[sorted.length - 1]!.name : undefined);
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

  /**
   * Opens and validates the header; the descriptor stays open until close(). Errors say why a file is not a
   * safetensors file without quoting its bytes (it may be any file: a wrong path, a link to /etc/passwd).
   */
  static open(file: string): SafetensorsFile {
    checkLittleEndian();
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new SafetensorsError(file, `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new SafetensorsError(file, `not a regular file (${stat.isDirectory() ? 'a directory' : 'a device, socket or pipe'})`);
      const fileSize = stat.size;
      if (fileSize < 8) {
        throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
      }
      const prefix = Buffer.alloc(8);
      readFully(fd, prefix, 0, file, 'the header length');
      const n64 = prefix.readBigUInt64LE(0);
      if (n64 > BigInt(fileSize - 8)) {
        throw new SafetensorsError(
          file, `not a safetensors file: its first 8 bytes, read as the header length, exceed the ${fileSize - 8} bytes after them ` +
            `(file of ${fileSize} bytes)`);
      }
      const n = Number(n64);
      if (n > MAX_HEADER_BYTES) {
        throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (the reference reader's)`);
      }
      if (n < 2) throw new SafetensorsError(file, `not a safetensors file: header length ${n} is too short for a JSON object`);
      const headerBytes = Buffer.alloc(n);
      readFully(fd, headerBytes, 8, file, 'the header');
      // The reference refuses a header that does not start with "{" (no BOM, no leading whitespace).
      if (headerBytes[0] !== 0x7b) throw new SafetensorsError(file, 'not a safetensors file: the header does not start with "{"');
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
      } catch {
        throw new SafetensorsError(file, 'header is not valid UTF-8');
      }
      let header: StrictJson;
      try {
        header = parseStrictJson(text);
      } catch (e) {
        if (!(e instanceof StrictJsonError)) throw e;
        const name = typeof e.path[0] === 'string' && e.path[0] !== '__metadata__' ? e.path[0] : undefined;
        throw new SafetensorsError(file, `header is not valid JSON: ${e.message}`, name);
      }
      const dataStart = 8 + n;
      return new SafetensorsFile(file, fd, parseHeader(file, header, dataStart, fileSize - dataStart), dataStart);
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
    if (t.end - t.begin > bufferConstants.MAX_LENGTH) {
      throw new SafetensorsError(this.path, `is ${t.end - t.begin} bytes, more than one host buffer holds (${bufferConstants.MAX_LENGTH} bytes)`, name);
    }
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

/**
 * The folder a model folder's files must stay inside: its real path, or for a Hugging Face hub cache snapshot
 * (`models--org--name/snapshots/<revision>`, whose files link to `../../blobs/<hash>`) the repository folder.
 */
export function modelFolderRoot(dir: string): string {
  const real = fs.realpathSync(dir);
  const parent = path.dirname(real);
  return path.basename(parent) === 'snapshots' && path.basename(path.dirname(parent)).startsWith('models--') ? path.dirname(parent) : real;
}

/**
 * Resolves `name` in the model folder `dir` (links followed, fs.realpathSync) and checks that it is a regular file
 * inside `modelFolderRoot(dir)`. Returns its path as `dir/name`, or why not (naming the path, never its content).
 */
export function resolveInFolder(dir: string, name: string): { file: string; problem: string | null } {
  const file = path.join(dir, name);
  let real: string, root: string;
  try {
    root = modelFolderRoot(dir);
    real = fs.realpathSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { file, problem: code === 'ENOENT' ? `${file} does not exist` : `${file} cannot be resolved (${code ?? (e as Error).message})` };
  }
  if (real !== root && !real.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) {
    return { file, problem: `${file} resolves to ${real}, outside the model folder ${root}` };
  }
  if (!fs.statSync(real).isFile()) return { file, problem: `${file} is not a regular file` };
  return { file, problem: null };
}

// Indexes are a few MB for the largest models; a bigger one is not an index.
const MAX_INDEX_BYTES = 100_000_000;

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
    let stat: fs.Stats;
    try {
      stat = fs.statSync(dir);
    } catch (e) {
      throw new SafetensorsError(dir, `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!stat.isDirectory()) {
      return dir.endsWith('.json') ? SafetensorsFolder.openIndex(dir) : SafetensorsFolder.openSingle(dir);
    }
    for (const [name, openAs] of [[SINGLE_FILE, SafetensorsFolder.openSingle], [INDEX_FILE, SafetensorsFolder.openIndex]] as const) {
      const file = path.join(dir, name);
      if (!fs.existsSync(file) && !isLink(file)) continue;
      const { problem } = resolveInFolder(dir, name);
      if (problem !== null) throw new SafetensorsError(file, problem);
      return openAs(file);
    }
    throw new SafetensorsError(dir, `neither ${SINGLE_FILE} nor ${INDEX_FILE} found in this folder`);
  }

  private static openSingle(file: string): SafetensorsFolder {
    const f = SafetensorsFile.open(file);
    return new SafetensorsFolder(file, [f], f.metadata, new Map(f.names().map((n) => [n, f])));
  }

  private static openIndex(indexPath: string): SafetensorsFolder {
    let index: unknown;
    try {
      const size = fs.statSync(indexPath).size;
      if (size > MAX_INDEX_BYTES) throw new SafetensorsError(indexPath, `index is ${size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
      const text = new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(indexPath));
      index = parseStrictJson(text).value; // weight_map's keys unique, as everywhere in the index
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      const why = e instanceof StrictJsonError ? e.message : e instanceof TypeError ? 'not valid UTF-8' : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
      throw new SafetensorsError(indexPath, `index is not valid JSON: ${why}`);
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
    for (const [shard, names] of byShard) {
      const { problem } = resolveInFolder(dir, shard);
      if (problem !== null) throw new SafetensorsError(indexPath, `weight_map names shard ${show(shard)}: ${problem}`, names[0]);
    }

    const files: SafetensorsFile[] = [];
    try {
      const map = new Map<string, SafetensorsFile>();
      const owner = new Map<string, SafetensorsFile>(); // every tensor any shard holds -> its shard
      for (const [shard, names] of byShard) {
        const shardPath = path.join(dir, shard);
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

// ---------------------------------------------------------------------------------------------
// Sharded writing, as transformers' save_pretrained(max_shard_size=...) lays it out

/** Bytes of a tensor as written: its element count times the size of its (default) dtype. */
function writtenBytes(t: TensorToWrite): number {
  const dtype: SafetensorsDType = t.dtype ?? (t.data instanceof Float64Array ? 'F64' : t.data instanceof Int32Array ? 'I32'
    : t.data instanceof Uint8Array ? 'U8' : t.data instanceof BigInt64Array ? 'I64' : 'F32');
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
}

export interface ShardPlan {
  /** The files to write, in order: `model.safetensors` alone, or `model-0000k-of-0000n.safetensors`. */
  shards: { file: string; tensors: Record<string, TensorToWrite> }[];
  /** model.safetensors.index.json's content when there is more than one shard, else null. */
  index: { metadata: { total_size: number }; weight_map: Record<string, string> } | null;
}

/**
 * Splits tensors (in the given order) into shards of at most maxShardBytes each, as transformers does: a tensor
 * that would overflow the current shard starts the next one, and a tensor larger than the limit has a shard of
 * its own. One shard is written as model.safetensors without an index.
 */
export function planShards(tensors: Record<string, TensorToWrite>, maxShardBytes: number): ShardPlan {
  if (!(Number.isSafeInteger(maxShardBytes) && maxShardBytes > 0)) throw new Error(`planShards: maxShardBytes must be a positive integer, got ${maxShardBytes}`);
  const groups: Record<string, TensorToWrite>[] = [];
  let current: Record<string, TensorToWrite> | null = null, currentBytes = 0, total = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = writtenBytes(t);
    total += bytes;
    if (current === null || (currentBytes + bytes > maxShardBytes && currentBytes > 0)) {
      current = {};
      groups.push(current);
      currentBytes = 0;
    }
    current[name] = t;
    currentBytes += bytes;
  }
  if (groups.length <= 1) return { shards: [{ file: SINGLE_FILE, tensors: groups[0] ?? {} }], index: null };
  const n = groups.length, pad = (k: number) => String(k).padStart(5, '0');
  const shards = groups.map((g, k) => ({ file: `model-${pad(k + 1)}-of-${pad(n)}.safetensors`, tensors: g }));
  const weight_map: Record<string, string> = {};
  for (const s of shards) for (const name of Object.keys(s.tensors)) weight_map[name] = s.file;
  return { shards, index: { metadata: { total_size: total }, weight_map } };
}

/**
 * Writes `dir/model.safetensors`, or past maxShardBytes the shards `model-0000k-of-0000n.safetensors` and
 * `model.safetensors.index.json` (transformers' layout); returns the file names written.
 */
export function writeShardedSafetensors(dir: string, tensors: Record<string, TensorToWrite>, maxShardBytes: number, metadata: Record<string, string> = { format: 'pt' }): string[] {
  const plan = planShards(tensors, maxShardBytes);
  fs.mkdirSync(dir, { recursive: true });
  for (const s of plan.shards) writeSafetensors(path.join(dir, s.file), s.tensors, metadata);
  if (plan.index === null) return [SINGLE_FILE];
  fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify(plan.index, null, 2) + '\n');
  return [...plan.shards.map((s) => s.file), INDEX_FILE];
}
