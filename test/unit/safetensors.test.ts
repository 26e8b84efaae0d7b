import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromDType, SafetensorsError, SafetensorsFile, SafetensorsFolder, readSafetensors, toDType, writeSafetensors } from '../../engine/safetensors.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../kernels/dtype.ts';
import { fixture } from '../support/paths.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-safetensors-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

let counter = 0;
const tmp = (name = 'f.safetensors') => path.join(dir, `${counter++}-${name}`);

/** Asserts fn throws a SafetensorsError whose message contains every needle. */
function throwsWith(fn: () => unknown, ...needles: string[]): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, SafetensorsError);
    const msg = (e as Error).message;
    for (const n of needles) assert.ok(msg.includes(n), `message ${JSON.stringify(msg)} should contain ${JSON.stringify(n)}`);
    return;
  }
  assert.unreachable(`expected a SafetensorsError containing ${needles.join(', ')}`);
}

/** Writes a file by hand: [u64 header length][header][data] (for malformed-file cases). */
function rawFile(header: unknown, dataBytes = 0, headerLength?: bigint): string {
  const p = tmp();
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  fs.writeFileSync(p, Buffer.concat([prefix, json, Buffer.alloc(dataBytes)]));
  return p;
}

const f16 = (...bits: number[]) => f16ToF32(Uint16Array.from(bits));
const bf16 = (...bits: number[]) => bf16ToF32(Uint16Array.from(bits));
const toF16 = (...v: number[]) => [...f32ToF16(Float32Array.from(v))];
const toBf16 = (...v: number[]) => [...f32ToBf16(Float32Array.from(v))];

// ---------------------------------------------------------------------------------------------
// 16-bit conversions

test('f16 -> f32 known bit patterns', () => {
  assert.equal([...f16(0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x3555, 0x0000)],
    [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 0.333251953125, 0]);
  const [inf, ninf, nan, negZero] = f16(0x7c00, 0xfc00, 0x7e00, 0x8000);
  assert.is(inf, Infinity);
  assert.is(ninf, -Infinity);
  assert.ok(Number.isNaN(nan));
  assert.ok(Object.is(negZero, -0));
});

test('f32 -> f16 rounds to nearest even', () => {
  assert.equal(toF16(1, -2, 65504, 2 ** -24, 2 ** -14, -0), [0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000]);
  // 65519 rounds down to the largest half, 65520 (the halfway point) rounds to inf
  assert.equal(toF16(65519, 65520, 1e6, -1e6), [0x7bff, 0x7c00, 0x7c00, 0xfc00]);
  // ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1); 1 + 3*2^-11 -> 1 + 2^-9
  assert.equal(toF16(1 + 2 ** -11, 1 + 3 * 2 ** -11), [0x3c00, 0x3c02]);
  // subnormal ties: 2^-25 is halfway between 0 and 2^-24 -> 0; 1.5 * 2^-24 -> 2 * 2^-24
  assert.equal(toF16(2 ** -25, 2 ** -25 * 1.0001, 1.5 * 2 ** -24, 2 ** -26), [0, 1, 2, 0]);
  // largest subnormal + half an ulp carries into the smallest normal
  assert.equal(toF16(1023.5 * 2 ** -24), [0x0400]);
  assert.equal(toF16(Infinity, -Infinity), [0x7c00, 0xfc00]);
  const [nan] = toF16(NaN);
  assert.ok(Number.isNaN(f16(nan!)[0]));
});

test('bf16 <-> f32 known bit patterns', () => {
  assert.equal([...bf16(0x3f80, 0xc000, 0x4049, 0x0001)], [1, -2, 3.140625, 2 ** -133]);
  const [inf, ninf, nan] = bf16(0x7f80, 0xff80, 0x7fc0);
  assert.is(inf, Infinity);
  assert.is(ninf, -Infinity);
  assert.ok(Number.isNaN(nan));
  assert.equal(toBf16(1, -2, Infinity, -0), [0x3f80, 0xc000, 0x7f80, 0x8000]);
  // ties to even: 1 + 2^-8 -> 1; 1 + 3*2^-8 -> 1 + 2^-6
  assert.equal(toBf16(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20), [0x3f80, 0x3f82, 0x3f81]);
  assert.equal(toBf16(3.4028234663852886e38), [0x7f80]); // float32 max rounds up to inf
  assert.ok(Number.isNaN(bf16(toBf16(NaN)[0]!)[0]));
});

test('f16 round trip is exact for every half value', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16(f16ToF32(all));
  for (let i = 0; i < 65536; i++) {
    const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (!isNaN && back[i] !== i) assert.unreachable(`half 0x${i.toString(16)} came back as 0x${back[i]!.toString(16)}`);
  }
});

test('conversions write into a provided output buffer', () => {
  const out = new Float32Array(4);
  assert.is(f16ToF32(Uint16Array.of(0x3c00, 0x4000), out.subarray(1, 3))[1], 2);
  assert.equal([...out], [0, 1, 2, 0]);
});

// ---------------------------------------------------------------------------------------------
// Round trips

test('round trip of every dtype, metadata, scalars and empty tensors', () => {
  const p = tmp();
  const f32 = Float32Array.from([1.5, -2.25, 3e-8, 1e30, -0, 7]);
  writeSafetensors(p, {
    f32: { shape: [2, 3], data: f32 },
    f16_from_f32: { dtype: 'F16', shape: [3], data: Float32Array.from([1, -2, 65504]) },
    f16_bits: { dtype: 'F16', shape: [2], data: Uint16Array.from([0x3c00, 0x0001]) },
    bf16: { dtype: 'BF16', shape: [3], data: Float32Array.from([1, -2, 3.140625]) },
    i32: { shape: [2, 2], data: Int32Array.from([1, -1, 2 ** 31 - 1, -(2 ** 31)]) },
    i64: { shape: [3], data: BigInt64Array.from([5n, -7n, 2n ** 31n - 1n]) },
    i64_from_i32: { dtype: 'I64', shape: [2], data: Int32Array.from([-100, 3]) },
    u8: { shape: [4], data: Uint8Array.from([0, 1, 128, 255]) },
    scalar: { shape: [], data: Float32Array.from([42]) },
    empty: { shape: [0, 5], data: new Float32Array(0) },
  }, { format: 'pt', note: 'hello' });

  // no temp file left behind
  assert.equal(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);

  // header length is a multiple of 8 and padded with spaces
  const bytes = fs.readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.is(n % 8, 0);
  const header = bytes.subarray(8, 8 + n).toString('utf8');
  assert.ok(/^\{.*\} *$/.test(header));
  assert.equal(JSON.parse(header).__metadata__, { format: 'pt', note: 'hello' });

  const f = SafetensorsFile.open(p);
  try {
    assert.equal(f.metadata, { format: 'pt', note: 'hello' });
    assert.equal(f.names().sort(),
      ['bf16', 'empty', 'f16_bits', 'f16_from_f32', 'f32', 'i32', 'i64', 'i64_from_i32', 'scalar', 'u8']);
    assert.equal(f.info('f32'), { name: 'f32', dtype: 'F32', shape: [2, 3], begin: f.info('f32').begin, end: f.info('f32').begin + 24 });
    assert.ok(f.info('f32').begin >= 8 + n); // absolute offsets
    // official order: wider dtypes first, so every tensor is aligned to its element size
    for (const name of f.names()) {
      const t = f.info(name);
      assert.is((t.begin - 8 - n) % { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1 }[t.dtype as 'F32'], 0);
    }

    const r = f.read('f32');
    assert.instance(r, Float32Array);
    assert.equal([...r], [...f32]);
    assert.equal([...f.read('f16_from_f32')], [1, -2, 65504]);
    assert.equal(f.info('f16_from_f32').dtype, 'F16');
    assert.equal([...f.read('f16_bits')], [1, 2 ** -24]);
    assert.equal([...new Uint16Array(f.readRaw('f16_bits').buffer)], [0x3c00, 0x0001]);
    assert.equal([...f.read('bf16')], [1, -2, 3.140625]);
    assert.instance(f.read('i32'), Int32Array);
    assert.equal([...f.read('i32')], [1, -1, 2 ** 31 - 1, -(2 ** 31)]);
    assert.instance(f.read('i64'), Int32Array);
    assert.equal([...f.read('i64')], [5, -7, 2 ** 31 - 1]);
    assert.equal([...f.readI64('i64')], [5n, -7n, 2n ** 31n - 1n]);
    assert.equal([...f.read('i64_from_i32')], [-100, 3]);
    assert.instance(f.read('u8'), Uint8Array);
    assert.equal([...f.read('u8')], [0, 1, 128, 255]);
    assert.equal([...f.read('scalar')], [42]);
    assert.equal(f.info('scalar').shape, []);
    assert.is(f.read('empty').length, 0);
    throwsWith(() => f.read('missing'), p, '"missing"');
    throwsWith(() => f.readI64('f32'), p, '"f32"', 'F32');
  } finally {
    f.close();
  }
  throwsWith(() => f.read('f32'), p, 'closed');

  const all = readSafetensors(p);
  assert.is(all.size, 10);
  assert.equal(all.get('i32')!.shape, [2, 2]);
  assert.equal([...all.get('bf16')!.data], [1, -2, 3.140625]);
});

test('F64 round trip: Float64Array in, the same bits out (float64 fixtures)', () => {
  const p = tmp();
  const values = Float64Array.from([0, -0, 1 / 3, Math.PI, -1e-310, 1e308, Infinity, -Infinity, NaN, 2 ** -1074]);
  writeSafetensors(p, { x: { shape: [2, 5], data: values }, y: { dtype: 'F64', shape: [], data: Float64Array.of(-2.5) }, z: { shape: [3], data: Float32Array.of(1, 2, 3) } });
  const f = SafetensorsFile.open(p);
  try {
    assert.is(f.info('x').dtype, 'F64');
    const x = f.read('x');
    assert.instance(x, Float64Array);
    assert.equal(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), new Uint8Array(values.buffer));
    assert.equal([...f.read('y')], [-2.5]);
    assert.equal([...f.read('z')], [1, 2, 3]);
  } finally { f.close(); }
  const all = readSafetensors(p);
  assert.equal(all.get('x')!.shape, [2, 5]);
  assert.instance(all.get('x')!.data, Float64Array);
  throwsWith(() => writeSafetensors(tmp(), { w: { dtype: 'F64', shape: [1], data: Float32Array.of(1) } }), 'cannot write Float32Array data as F64');
});

test('toDType and fromDType map the file names to juice dtypes at the boundary', () => {
  assert.is(toDType('BF16'), 'bf16');
  assert.is(toDType('F32'), 'f32');
  assert.is(toDType('I64'), null);
  assert.is(toDType('F64'), null);
  for (const d of ['f32', 'f16', 'bf16', 'i32', 'u32'] as const) assert.is(toDType(fromDType(d)), d);
});

test('I64 values outside int32 give a clear error; readI64 still works', () => {
  const p = tmp();
  writeSafetensors(p, { ids: { shape: [3], data: BigInt64Array.from([1n, 2n ** 31n, 3n]) } });
  const f = SafetensorsFile.open(p);
  throwsWith(() => f.read('ids'), p, '"ids"', '2147483648', 'index 1');
  assert.equal([...f.readI64('ids')], [1n, 2n ** 31n, 3n]);
  f.close();
});

test('writer overwrites atomically and validates its input', () => {
  const p = tmp();
  writeSafetensors(p, { a: { shape: [1], data: Float32Array.of(1) } });
  writeSafetensors(p, { b: { shape: [2], data: Float32Array.of(2, 3) } });
  assert.equal([...readSafetensors(p).keys()], ['b']);
  assert.equal(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  throwsWith(() => writeSafetensors(p, { a: { shape: [2, 2], data: new Float32Array(3) } }), p, '"a"', '4', '3');
  throwsWith(() => writeSafetensors(p, { a: { shape: [2], data: new Uint16Array(2) } }), p, '"a"', 'Uint16Array');
  throwsWith(() => writeSafetensors(p, { a: { dtype: 'F32', shape: [2], data: new Int32Array(2) } }), p, '"a"', 'F32');
  throwsWith(() => writeSafetensors(p, { a: { shape: [-1], data: new Float32Array(0) } }), p, '"a"', '[-1]');
  // a failed write leaves the previous file intact
  assert.equal([...readSafetensors(p).keys()], ['b']);
});

// ---------------------------------------------------------------------------------------------
// Positioned reads beyond 4 GiB (sparse file, so it takes no disk space)

test('reads a tensor placed past 4 GiB', () => {
  const p = tmp();
  const offset = 4.5 * 2 ** 30;
  // The tensors tile the data section, so a sparse `pad` fills the bytes before `far`.
  const header = Buffer.from(JSON.stringify({
    pad: { dtype: 'U8', shape: [offset], data_offsets: [0, offset] },
    far: { dtype: 'F32', shape: [2], data_offsets: [offset, offset + 8] },
  }));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  const fd = fs.openSync(p, 'w');
  fs.writeSync(fd, Buffer.concat([prefix, header]));
  fs.ftruncateSync(fd, 8 + header.length + offset);
  fs.writeSync(fd, new Uint8Array(Float32Array.of(3.5, -1).buffer), 0, 8, 8 + header.length + offset);
  fs.closeSync(fd);
  const st = fs.statSync(p);
  try {
    if (!(st.blocks > 0 && st.blocks * 512 < 2 ** 24)) {
      console.log('  (skipped the 4 GiB read: this file system does not make sparse files)');
      return;
    }
    const f = SafetensorsFile.open(p);
    assert.is(f.info('far').begin, 8 + header.length + offset);
    assert.equal([...f.read('far')], [3.5, -1]);
    f.close();
  } finally {
    fs.rmSync(p);
  }
});

// ---------------------------------------------------------------------------------------------
// Malformed files: every error names the file, and the tensor and value where there is one

test('error: file shorter than 8 bytes', () => {
  const p = tmp();
  fs.writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
  throwsWith(() => SafetensorsFile.open(p), p, '5 bytes');
});

test('error: header length past the end of the file', () => {
  // The 8 bytes may be any file's content (a text file's first characters): the message does not print them.
  const p = rawFile('{}', 0, 1000n);
  throwsWith(() => SafetensorsFile.open(p), p, 'not a safetensors file', 'header length', '10 bytes');
  const q = rawFile('{}', 0, 2n ** 64n - 1n); // would overflow a naive u64 -> number conversion
  throwsWith(() => SafetensorsFile.open(q), q, 'not a safetensors file');
  for (const f of [p, q]) {
    try { SafetensorsFile.open(f); } catch (e) { assert.not.ok(/1000|18446744073709551615/.test((e as Error).message.slice(f.length))); }
  }
});

test('error: header not valid JSON', () => {
  const p = rawFile('{"a": {"dtype": ');
  throwsWith(() => SafetensorsFile.open(p), p, 'not valid JSON');
});

test('error: header not a JSON object', () => {
  const p = rawFile('[1, 2]');
  throwsWith(() => SafetensorsFile.open(p), p, 'does not start with "{"');
  const q = rawFile({ t: 'F32' });
  throwsWith(() => SafetensorsFile.open(q), q, '"t"', 'must be an object');
});

test('error: unknown dtype', () => {
  const p = rawFile({ weights: { dtype: 'Q7', shape: [1], data_offsets: [0, 1] } }, 1);
  throwsWith(() => SafetensorsFile.open(p), p, '"weights"', '"Q7"');
});

test('error: shape not an array of non-negative integers', () => {
  for (const shape of [[2, -1], [1.5], '3', [null]]) {
    const p = rawFile({ w: { dtype: 'F32', shape, data_offsets: [0, 4] } }, 4);
    throwsWith(() => SafetensorsFile.open(p), p, '"w"', 'shape', JSON.stringify(shape));
  }
});

test('error: data_offsets not two integers with begin <= end', () => {
  for (const offsets of [[8, 4], [0], [0, '4'], [0, 4, 8], [-4, 0], [0.5, 4], 'x']) {
    const p = rawFile({ w: { dtype: 'U8', shape: [4], data_offsets: offsets } }, 16);
    throwsWith(() => SafetensorsFile.open(p), p, '"w"', 'data_offsets', JSON.stringify(offsets));
  }
});

test('error: offsets outside the data section', () => {
  const p = rawFile({ w: { dtype: 'F32', shape: [100], data_offsets: [0, 400] } }, 16);
  throwsWith(() => SafetensorsFile.open(p), p, '"w"', '[0,400]', '16 bytes');
});

test('error: overlapping tensors', () => {
  const p = rawFile({
    a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
    b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
  }, 24);
  throwsWith(() => SafetensorsFile.open(p), p, '"a"', '"b"', 'overlap');
  // a small tensor inside a big one
  const q = rawFile({
    big: { dtype: 'U8', shape: [32], data_offsets: [0, 32] },
    inner: { dtype: 'U8', shape: [4], data_offsets: [20, 24] },
  }, 32);
  throwsWith(() => SafetensorsFile.open(q), q, '"big"', '"inner"', 'overlap');
  // as in the reference, even an empty tensor must sit where the previous one ends, not inside it
  const r = rawFile({
    big: { dtype: 'U8', shape: [32], data_offsets: [0, 32] },
    mid: { dtype: 'U8', shape: [0], data_offsets: [4, 4] },
  }, 32);
  throwsWith(() => SafetensorsFile.open(r), r, '"big"', '"mid"', 'overlap');
});

test('error: shape x dtype size differs from the byte length', () => {
  const p = rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, 16);
  throwsWith(() => SafetensorsFile.open(p), p, '"w"', '12 bytes', '16 bytes');
});

test('error: non-string metadata, unsupported dtype on read', () => {
  const p = rawFile({ __metadata__: { total: 5 } });
  throwsWith(() => SafetensorsFile.open(p), p, 'total', '5');
  // known but unconverted dtypes open fine (the file is valid) and are available raw
  const q = rawFile({
    d: { dtype: 'U64', shape: [1], data_offsets: [0, 8] },
    mask: { dtype: 'BOOL', shape: [2], data_offsets: [8, 10] },
  }, 10);
  const f = SafetensorsFile.open(q);
  throwsWith(() => f.read('d'), q, '"d"', 'U64');
  assert.is(f.readRaw('d').length, 8);
  assert.equal([...f.read('mask')], [0, 0]);
  f.close();
});

test('error: unused bytes before, between or after the tensors (the reference tiles the data section)', () => {
  const before = rawFile({ w: { dtype: 'U8', shape: [2], data_offsets: [6, 8] } }, 8);
  throwsWith(() => SafetensorsFile.open(before), before, '"w"', '[0, 6)', 'must begin at 0');
  const between = rawFile({
    a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
    b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] },
  }, 6);
  throwsWith(() => SafetensorsFile.open(between), between, '"b"', '[2, 4)', '"a" ends at 2');
  const after = rawFile({ w: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 5);
  throwsWith(() => SafetensorsFile.open(after), after, '"w"', 'cover 2 of the 5 bytes', '3 unused');
  const empty = rawFile({}, 1);
  throwsWith(() => SafetensorsFile.open(empty), empty, 'cover 0 of the 1 bytes');
  // empty tensors at the seams are fine; so is an empty header with no data
  const seams = rawFile({
    a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
    e: { dtype: 'F32', shape: [0, 3], data_offsets: [2, 2] },
    b: { dtype: 'U8', shape: [1], data_offsets: [2, 3] },
  }, 3);
  assert.equal([...readSafetensors(seams).keys()], ['a', 'e', 'b']);
  assert.is(readSafetensors(rawFile({})).size, 0);
});

test('error: a header length one short or one long of the real one (the padding still parses)', () => {
  const src = fs.readFileSync('test/fixtures/hf/gpt_neox/model.safetensors');
  const n = src.readBigUInt64LE(0);
  assert.ok(/ $/.test(src.subarray(8, 8 + Number(n)).toString()), 'the fixture header ends in padding');
  for (const k of [-1n, -2n, 1n]) {
    const p = tmp();
    const b = Buffer.from(src);
    b.writeBigUInt64LE(n + k);
    fs.writeFileSync(p, b);
    // one long takes the first data byte into the header, which then is no longer UTF-8 JSON
    throwsWith(() => SafetensorsFile.open(p), p, ...(k < 0n ? ['the tensors cover', 'header length'] : ['header is not valid']));
  }
});

test('error: duplicate keys at any depth, numbers written with a fraction or an exponent', () => {
  const w = '"dtype":"U8","shape":[1],"data_offsets":[0,1]';
  const top = rawFile(`{"a":{${w}},"a":{${w}}}`, 1);
  throwsWith(() => SafetensorsFile.open(top), top, '"a"', 'duplicate key');
  const nested = rawFile(`{"a":{${w},"dtype":"F32"}}`, 1);
  throwsWith(() => SafetensorsFile.open(nested), nested, '"a"', 'duplicate key', 'a.dtype');
  const meta = rawFile(`{"__metadata__":{"k":"1","k":"2"}}`);
  throwsWith(() => SafetensorsFile.open(meta), meta, 'duplicate key', '__metadata__.k');
  for (const [shape, offsets, token] of [['1.0', '[0,1]', '1.0'], ['1', '[0,1e0]', '1e0'], ['1', '[0E1,1]', '0E1'], ['1', '[0,1.5]', '1.5']]) {
    const p = rawFile(`{"a":{"dtype":"U8","shape":[${shape}],"data_offsets":${offsets}}}`, 1);
    throwsWith(() => SafetensorsFile.open(p), p, '"a"', token, 'fraction or an exponent', shape === '1' ? 'data_offsets' : 'shape');
  }
});

test('error: a BOM or whitespace before the header, text after it, nesting too deep, a non-UTF-8 header', () => {
  const w = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
  for (const lead of ['\uFEFF', ' ', '\n']) {
    const p = rawFile(lead + w, 1);
    throwsWith(() => SafetensorsFile.open(p), p, 'does not start with "{"');
  }
  const after = rawFile(w + ' x', 1);
  throwsWith(() => SafetensorsFile.open(after), after, 'not valid JSON', 'after the JSON value');
  const deep = rawFile(`{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`);
  throwsWith(() => SafetensorsFile.open(deep), deep, 'nesting deeper');
  const bad = rawFile(Buffer.concat([Buffer.from('{"\xff":'), Buffer.from([0xff]), Buffer.from('}')]).toString('latin1'));
  throwsWith(() => SafetensorsFile.open(bad), bad, 'not valid');
  // padding spaces after the object are the writer's own and are fine
  assert.equal([...readSafetensors(rawFile(w + '      ', 1)).keys()], ['a']);
});

// ---------------------------------------------------------------------------------------------
// Folders and sharded checkpoints

function shardedFolder(weightMap: Record<string, string>): string {
  const d = fs.mkdtempSync(path.join(dir, 'sharded-'));
  writeSafetensors(path.join(d, 'model-00001-of-00002.safetensors'), {
    'a.weight': { shape: [2], data: Float32Array.of(1, 2) },
    'b.weight': { dtype: 'BF16', shape: [1], data: Float32Array.of(-2) },
  });
  writeSafetensors(path.join(d, 'model-00002-of-00002.safetensors'), {
    'c.weight': { shape: [3], data: Int32Array.of(7, 8, 9) },
  });
  fs.writeFileSync(path.join(d, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: 24 }, weight_map: weightMap }));
  return d;
}

const goodMap = {
  'a.weight': 'model-00001-of-00002.safetensors',
  'b.weight': 'model-00001-of-00002.safetensors',
  'c.weight': 'model-00002-of-00002.safetensors',
};

test('sharded folder reads across shards', () => {
  const d = shardedFolder(goodMap);
  const folder = SafetensorsFolder.open(d);
  try {
    assert.equal(folder.names().sort(), ['a.weight', 'b.weight', 'c.weight']);
    assert.equal(folder.metadata, { total_size: 24 });
    assert.equal([...folder.read('a.weight')], [1, 2]);
    assert.equal([...folder.read('b.weight')], [-2]);
    assert.equal([...folder.read('c.weight')], [7, 8, 9]);
    assert.equal(folder.info('c.weight').shape, [3]);
    assert.ok(folder.fileOf('c.weight').path.endsWith('model-00002-of-00002.safetensors'));
    throwsWith(() => folder.read('nope'), '"nope"');
  } finally {
    folder.close();
  }
  // also opens from the index path itself
  const viaIndex = SafetensorsFolder.open(path.join(d, 'model.safetensors.index.json'));
  assert.is(viaIndex.names().length, 3);
  viaIndex.close();
});

test('folder prefers model.safetensors, and errors when there is nothing to open', () => {
  const d = fs.mkdtempSync(path.join(dir, 'single-'));
  throwsWith(() => SafetensorsFolder.open(d), d, 'model.safetensors.index.json');
  writeSafetensors(path.join(d, 'model.safetensors'), { x: { shape: [1], data: Float32Array.of(5) } }, { format: 'pt' });
  const folder = SafetensorsFolder.open(d);
  assert.equal(folder.names(), ['x']);
  assert.equal(folder.metadata, { format: 'pt' });
  assert.equal([...folder.read('x')], [5]);
  folder.close();
});

test('error: the index names a tensor its shard lacks', () => {
  const d = shardedFolder({ ...goodMap, 'c.weight': 'model-00001-of-00002.safetensors' });
  throwsWith(() => SafetensorsFolder.open(d), path.join(d, 'model.safetensors.index.json'),
    '"c.weight"', path.join(d, 'model-00001-of-00002.safetensors'));
});

test('error: a tensor in two shards', () => {
  const d = shardedFolder(goodMap);
  writeSafetensors(path.join(d, 'model-00002-of-00002.safetensors'), {
    'c.weight': { shape: [3], data: Int32Array.of(7, 8, 9) },
    'a.weight': { shape: [2], data: Float32Array.of(1, 2) },
  });
  throwsWith(() => SafetensorsFolder.open(d), '"a.weight"',
    path.join(d, 'model-00001-of-00002.safetensors'), path.join(d, 'model-00002-of-00002.safetensors'));
});

test('error: missing shard, shard outside the folder, malformed index', () => {
  const d = shardedFolder({ ...goodMap, 'z.weight': 'model-00003-of-00002.safetensors' });
  throwsWith(() => SafetensorsFolder.open(d), path.join(d, 'model-00003-of-00002.safetensors'), 'does not exist');
  const e = shardedFolder({ ...goodMap, 'z.weight': '../elsewhere.safetensors' });
  throwsWith(() => SafetensorsFolder.open(e), '"z.weight"', '../elsewhere.safetensors');
  const f = shardedFolder(goodMap);
  fs.writeFileSync(path.join(f, 'model.safetensors.index.json'), '{"weight_map": ');
  throwsWith(() => SafetensorsFolder.open(f), path.join(f, 'model.safetensors.index.json'), 'not valid JSON');
});

test('error: weight_map names a folder, a duplicate key, or a file outside the folder through a link', () => {
  const index = (d: string) => path.join(d, 'model.safetensors.index.json');
  const dot = shardedFolder({ ...goodMap, 'z.weight': '.' });
  throwsWith(() => SafetensorsFolder.open(dot), index(dot), '"z.weight"', 'not a regular file');
  const dup = shardedFolder(goodMap);
  fs.writeFileSync(index(dup), `{"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "a.weight": "model-00002-of-00002.safetensors"}}`);
  throwsWith(() => SafetensorsFolder.open(dup), index(dup), 'duplicate key', 'weight_map');
  const link = shardedFolder({ ...goodMap, 'z.weight': 'etc/passwd' });
  fs.symlinkSync('/etc', path.join(link, 'etc'));
  throwsWith(() => SafetensorsFolder.open(link), index(link), '"z.weight"', 'outside the model folder');
  // a model.safetensors that links out of the folder is refused too, and its bytes are never read
  const single = fs.mkdtempSync(path.join(dir, 'single-'));
  fs.symlinkSync('/etc/passwd', path.join(single, 'model.safetensors'));
  throwsWith(() => SafetensorsFolder.open(single), 'outside the model folder');
  // a link inside the folder is fine, and so is a Hugging Face cache snapshot linking to its blobs
  const hub = fs.mkdtempSync(path.join(dir, 'hub-'));
  const repo = path.join(hub, 'models--org--tiny');
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  fs.mkdirSync(path.join(repo, 'snapshots', 'abc123'), { recursive: true });
  writeSafetensors(path.join(repo, 'blobs', 'deadbeef'), { w: { shape: [1], data: Float32Array.of(5) } });
  fs.symlinkSync('../../blobs/deadbeef', path.join(repo, 'snapshots', 'abc123', 'model.safetensors'));
  const folder = SafetensorsFolder.open(path.join(repo, 'snapshots', 'abc123'));
  assert.equal([...folder.read('w')], [5]);
  folder.close();
});

// ---------------------------------------------------------------------------------------------
// The shared PyTorch / transformers fixtures

const FIXTURES = fixture('hf');

test('fixture: ops/expected.safetensors', () => {
  const p = path.join(FIXTURES, 'ops/expected.safetensors');
  if (!fs.existsSync(p)) {
    console.log(`  (skipped: ${p} does not exist)`);
    return;
  }
  const expected: Record<string, [string, number[]]> = {
    'adamw.after': ['F32', [3, 50]], 'adamw.grads': ['F32', [3, 50]], 'adamw.p0': ['F32', [50]],
    bias: ['F32', [96]], weight: ['F32', [96]], x: ['F32', [7, 96]], dy: ['F32', [7, 96]],
    'ce.logits': ['F32', [21, 257]], 'ce.dlogits': ['F32', [21, 257]], 'ce.loss': ['F32', [1]],
    'ce.targets': ['I32', [21]],
    'layernorm.y': ['F32', [7, 96]], 'layernorm.dx': ['F32', [7, 96]],
    'layernorm.dweight': ['F32', [96]], 'layernorm.dbias': ['F32', [96]],
    'rmsnorm.y': ['F32', [7, 96]], 'rmsnorm.dx': ['F32', [7, 96]], 'rmsnorm.dweight': ['F32', [96]],
  };
  const all = readSafetensors(p);
  assert.equal([...all.keys()].sort(), Object.keys(expected).sort());
  for (const [name, [dtype, shape]] of Object.entries(expected)) {
    const t = all.get(name)!;
    assert.is(t.dtype, dtype, name);
    assert.equal(t.shape, shape, name);
    assert.is(t.data.length, shape.reduce((a, b) => a * b, 1), name);
    assert.instance(t.data, dtype === 'F32' ? Float32Array : Int32Array);
    for (const v of t.data) if (!Number.isFinite(v)) assert.unreachable(`${name} has a non-finite value`);
  }
  // cross-entropy targets: class ids, with -100 for ignored positions
  const targets = [...all.get('ce.targets')!.data];
  assert.ok(targets.includes(-100));
  assert.ok(targets.every((t) => t === -100 || (t >= 0 && t < 257)));
  const loss = all.get('ce.loss')!.data[0]!;
  assert.ok(loss > 0 && loss < 20);
});

test('fixture: every shared .safetensors file opens and reads', () => {
  if (!fs.existsSync(FIXTURES)) {
    console.log(`  (skipped: ${FIXTURES} does not exist)`);
    return;
  }
  const files = (fs.readdirSync(FIXTURES, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.safetensors')).map((f) => path.join(FIXTURES, f));
  assert.ok(files.length > 0);
  for (const p of files) {
    const f = SafetensorsFile.open(p);
    try {
      for (const name of f.names()) {
        const t = f.info(name);
        assert.is(f.read(name).length, t.shape.reduce((a, b) => a * b, 1), `${p} ${name}`);
      }
    } finally {
      f.close();
    }
  }
  // the model folders open as folders too
  const neox = SafetensorsFolder.open(path.join(FIXTURES, 'gpt_neox'));
  assert.ok(neox.has('embed_out.weight'));
  neox.close();
});

test.run();
