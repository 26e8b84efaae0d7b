// Seeded mutation fuzzing of every file a model or dataset folder is read from: safetensors headers and data,
// config.json, model.safetensors.index.json, JSONL datasets and adapter_config.json.
//
// Each case copies a valid original, mutates it (deterministically from the seed and the case number), loads it
// and classifies the outcome. Allowed outcomes:
//   typed:<ErrorClass>  the loader refused it with its own error class, and the message names the file;
//   identical           it loaded, and what it loaded equals the original (a change that changes nothing);
//   accepted            it loaded something else that is itself consistent (checked here independently: e.g. a
//                       flipped data bit is a valid file holding other numbers; a deleted optional config field
//                       takes its default), never data the loader should have refused.
// Failures (prefixed FAIL): crash:<Class> (a generic exception: TypeError, RangeError, Error, ...), silent (loaded
// data the independent check finds inconsistent), untyped-file (a typed error that does not name the file), slow
// (a case over the time limit; loaders are synchronous, so a hang is caught only once it returns).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsError, SafetensorsFile, SafetensorsFolder, dtypeSize, writeSafetensors, type SafetensorsDType } from '../../engine/safetensors.ts';
import { CONFIG_LIMITS, ConfigError, loadConfig, modelParams, type ModelConfig } from '../../models/config.ts';
import { DataError } from '../../train/data/types.ts';
import { readExamples } from '../../train/data/formats.ts';

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a 32-bit state PRNG, enough for picking mutations reproducibly. */
export class Prng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  chance(p: number): boolean { return this.next() < p; }
}

export const caseSeed = (seed: number, i: number) => (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0;

// ---------------------------------------------------------------------------------------------
// Outcomes

export interface CaseResult { outcome: string; mutation: string; detail?: string }

class Accepted { constructor(readonly identical: boolean) {} }
/** Thrown by a target's check when a load succeeded on inconsistent data. */
class Silent extends Error {}

/** The typed errors and how to tell that one names the file. */
const TYPED: { cls: new (...a: never[]) => Error; names: (e: Error, file: string) => boolean }[] = [
  { cls: SafetensorsError, names: (e, f) => e.message.includes(f) },
  { cls: ConfigError, names: (e, f) => (e as ConfigError).file === f || e.message.includes(f) },
  { cls: DataError, names: (e, f) => (e as DataError).file === f },
];

function classify(e: unknown, file: string, extraTyped: Record<string, (e: Error) => boolean>): string {
  if (e instanceof Silent) return 'FAIL:silent';
  if (!(e instanceof Error)) return `FAIL:crash:${typeof e}`;
  for (const t of TYPED) if (e instanceof t.cls) return t.names(e, file) ? `typed:${e.name}` : 'FAIL:untyped-file';
  if (Object.hasOwn(extraTyped, e.name)) return extraTyped[e.name]!(e) ? `typed:${e.name}` : 'FAIL:untyped-file';
  return `FAIL:crash:${e.name}`;
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const deepEqual = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

// ---------------------------------------------------------------------------------------------
// Targets

export interface FuzzTarget {
  name: string;
  /** Builds the originals once, under `dir`. */
  setup(dir: string): void | Promise<void>;
  /** One case in the empty folder `caseDir`: mutate, load, check; returns the mutation's name and the outcome. */
  run(rng: Prng, caseDir: string): Promise<CaseResult>;
}

async function outcomeOf(mutation: string, file: string, load: () => unknown, extraTyped: Record<string, (e: Error) => boolean> = {}): Promise<CaseResult> {
  try {
    const r = await load();
    if (!(r instanceof Accepted)) throw new Error('unreachable: a target returns Accepted');
    return { mutation, outcome: r.identical ? 'identical' : 'accepted' };
  } catch (e) {
    const outcome = classify(e, file, extraTyped);
    return { mutation, outcome, ...(outcome.startsWith('FAIL') ? { detail: `${(e as Error)?.name}: ${String((e as Error)?.message ?? e).slice(0, 300)}` } : {}) };
  }
}

// --- safetensors -----------------------------------------------------------------------------

interface Snapshot { metadata: Record<string, string>; tensors: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> }

function snapshot(file: string): Snapshot & { begin: Map<string, number>; dataStart: number } {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
    const begin = new Map<string, number>();
    for (const n of f.names()) {
      const t = f.info(n);
      tensors.set(n, { dtype: t.dtype, shape: t.shape, bytes: f.readRaw(n) });
      begin.set(n, t.begin);
      if (['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'BOOL', 'F64'].includes(t.dtype)) f.read(n); // conversions must not crash
    }
    return { metadata: f.metadata, tensors, begin, dataStart: f.dataStart };
  } finally {
    f.close();
  }
}

function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  if (!deepEqual(a.metadata, b.metadata) || a.tensors.size !== b.tensors.size) return false;
  for (const [n, t] of a.tensors) {
    const u = b.tensors.get(n);
    if (!u || u.dtype !== t.dtype || !deepEqual(u.shape, t.shape) || !same(u.bytes, t.bytes)) return false;
  }
  return true;
}

/**
 * The independent check of an accepted file: the header (read with JSON.parse) describes exactly what was
 * loaded, each tensor's bytes are numel x dtype size, and the tensors tile the bytes after the header.
 */
function checkConsistent(bytes: Buffer, got: ReturnType<typeof snapshot>): void {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  if (names.length !== got.tensors.size) throw new Silent(`header has ${names.length} tensors, loaded ${got.tensors.size}`);
  const spans: [number, number][] = [];
  for (const name of names) {
    const h = header[name]!, t = got.tensors.get(name);
    if (!t || t.dtype !== h.dtype || !deepEqual(t.shape, h.shape)) throw new Silent(`tensor ${name} differs from its header entry`);
    const size = dtypeSize(h.dtype as SafetensorsDType) * h.shape.reduce((a, b) => a * b, 1);
    if (t.bytes.length !== size || h.data_offsets[1] - h.data_offsets[0] !== size) throw new Silent(`tensor ${name}: ${t.bytes.length} bytes for a ${size}-byte shape`);
    if (got.begin.get(name) !== 8 + n + h.data_offsets[0]) throw new Silent(`tensor ${name} read from the wrong offset`);
    if (!same(t.bytes, bytes.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]))) throw new Silent(`tensor ${name}: bytes differ from the file's`);
    spans.push(h.data_offsets);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [b, e] of spans) { if (b !== at) throw new Silent(`data not tiled at ${at}`); at = e; }
  if (8 + n + at !== bytes.length) throw new Silent(`${bytes.length - 8 - n - at} bytes after the last tensor`);
  if (bytes[8] !== 0x7b) throw new Silent('header does not start with {');
}

const SAFETENSORS_MUTATIONS = [
  'bitflip-header', 'bitflip-data', 'bitflip-length', 'truncate', 'append', 'length+-k',
  'json-duplicate-key', 'json-duplicate-nested', 'json-float', 'json-negative', 'json-huge-shape', 'json-wrong-dtype',
  'json-overlap', 'json-gap', 'json-drop-tensor', 'json-swap-offsets', 'json-prefix', 'json-metadata-type',
  'json-deep', 'json-proto', 'json-extra-field', 'json-shape-swap', 'json-pad-change',
] as const;

export function safetensorsTarget(): FuzzTarget {
  let original: Buffer;
  let originalSnap: Snapshot;
  return {
    name: 'safetensors',
    setup(dir) {
      const file = path.join(dir, 'original.safetensors');
      writeSafetensors(file, {
        w: { shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-8, 7) },
        h: { dtype: 'F16', shape: [4], data: Uint16Array.of(0x3c00, 0xc000, 0x7bff, 1) },
        i: { dtype: 'I64', shape: [2], data: BigInt64Array.of(5n, -7n) },
        m: { dtype: 'U8', shape: [3], data: Uint8Array.of(0, 1, 255) },
        e: { shape: [0, 2], data: new Float32Array(0) },
        s: { shape: [], data: Float32Array.of(42) },
      }, { format: 'pt' });
      original = fs.readFileSync(file);
      originalSnap = snapshot(file);
    },
    async run(rng, caseDir) {
      const mutation = rng.pick(SAFETENSORS_MUTATIONS);
      const file = path.join(caseDir, 'model.safetensors');
      const n = Number(original.readBigUInt64LE(0));
      const headerText = original.subarray(8, 8 + n).toString('utf8');
      const data = original.subarray(8 + n);
      const header = JSON.parse(headerText) as Record<string, Record<string, unknown>>;
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      const withHeader = (text: string, length?: bigint) => {
        const json = Buffer.from(text, 'utf8');
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(length ?? BigInt(json.length));
        return Buffer.concat([prefix, json, data]);
      };
      const edit = (f: (h: Record<string, Record<string, unknown>>) => void) => { const h = structuredClone(header); f(h); return withHeader(JSON.stringify(h)); };
      let bytes: Buffer;
      const t = rng.pick(names);
      switch (mutation) {
        case 'bitflip-header': { bytes = Buffer.from(original); const at = 8 + rng.int(n); bytes[at]! ^= 1 << rng.int(8); break; }
        case 'bitflip-data': { bytes = Buffer.from(original); const at = 8 + n + rng.int(data.length); bytes[at]! ^= 1 << rng.int(8); break; }
        case 'bitflip-length': { bytes = Buffer.from(original); bytes[rng.int(8)]! ^= 1 << rng.int(8); break; }
        case 'truncate': bytes = original.subarray(0, rng.int(original.length)); break;
        case 'append': bytes = Buffer.concat([original, Buffer.alloc(1 + rng.int(16), rng.pick([0, 0x20, 0x7b]))]); break;
        case 'length+-k': { const k = BigInt(1 + rng.int(16)) * (rng.chance(0.5) ? 1n : -1n); bytes = withHeader(headerText, BigInt(n) + k); break; }
        case 'json-duplicate-key': {
          const entry = JSON.stringify(header[t]);
          bytes = withHeader(headerText.trimEnd().replace(/\}$/, `,${JSON.stringify(t)}:${rng.chance(0.5) ? entry : JSON.stringify({ ...header[t], shape: [1] })}}`));
          break;
        }
        case 'json-duplicate-nested': bytes = withHeader(headerText.replace(`"${t}":{`, `"${t}":{"dtype":"${rng.pick(['F32', 'U8', header[t]!.dtype as string])}",`)); break;
        case 'json-float': {
          const k = rng.pick(['shape', 'data_offsets'] as const);
          const arr = header[t]![k] as number[];
          if (arr.length === 0) { bytes = withHeader(headerText.replace(`"${t}":{`, `"${t}":{"extra":1.5,`)); break; }
          const j = rng.int(arr.length), v = arr[j]!;
          const token = rng.pick([`${v}.0`, `${v}e0`, `${v}E+0`, `${v * 10}e-1`, `${v}.5`]);
          const text = JSON.stringify(arr.map((x, i) => (i === j ? '@' : x))).replace('"@"', token);
          bytes = withHeader(headerText.replace(`"${k}":${JSON.stringify(arr)}`, `"${k}":${text}`));
          break;
        }
        case 'json-negative': bytes = edit((h) => { const k = rng.pick(['shape', 'data_offsets']); const a = h[t]![k] as number[]; if (a.length) a[rng.int(a.length)] = -1 - rng.int(4); else a.push(-1); }); break;
        case 'json-huge-shape': bytes = edit((h) => { h[t]!.shape = [rng.pick([2 ** 53, 2 ** 31, 2 ** 32 + 1, 1e300, Number.MAX_SAFE_INTEGER]), rng.pick([1, 2 ** 20, 0])]; }); break;
        case 'json-wrong-dtype': bytes = edit((h) => { h[t]!.dtype = rng.pick(['F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'U64', 'F8_E4M3', 'f32', 'Q4', '', 7, null, ['F32']]); }); break;
        case 'json-overlap': bytes = edit((h) => { const o = h[t]!.data_offsets as number[]; const d = 1 + rng.int(4); h[t]!.data_offsets = [Math.max(0, o[0]! - d), o[1]! - d]; }); break;
        case 'json-gap': bytes = edit((h) => { const o = h[t]!.data_offsets as number[]; const d = 1 + rng.int(4); h[t]!.data_offsets = [o[0]! + d, o[1]! + d]; }); break;
        case 'json-drop-tensor': bytes = edit((h) => { delete h[t]; }); break;
        case 'json-swap-offsets': {
          const u = rng.pick(names);
          bytes = edit((h) => { const a = h[t]!.data_offsets; h[t]!.data_offsets = h[u]!.data_offsets; h[u]!.data_offsets = a; });
          break;
        }
        case 'json-prefix': bytes = withHeader(rng.pick(['\uFEFF', ' ', '\n', '\t', '\r\n']) + headerText.trimEnd()); break;
        case 'json-metadata-type': bytes = edit((h) => { h.__metadata__ = rng.pick([{ format: 1 }, [], 'pt', null, { format: { x: 'y' } }, { format: 'pt', other: 'x' }]) as Record<string, unknown>; }); break;
        case 'json-deep': bytes = withHeader(headerText.trimEnd().replace(/\}$/, `,"deep":${'['.repeat(50 + rng.int(5000))}${']'.repeat(50 + rng.int(5000))}}`)); break;
        case 'json-proto': bytes = withHeader(headerText.trimEnd().replace(/\}$/, rng.chance(0.5) ? ',"__proto__":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' : ',"constructor":{}}')); break;
        case 'json-extra-field': bytes = edit((h) => { h[t]![rng.pick(['extra', 'dtype2', 'offsets'])] = rng.pick([1, 'x', null, [1]]); }); break;
        case 'json-shape-swap': bytes = edit((h) => { const s = h[t]!.shape as number[]; h[t]!.shape = rng.chance(0.5) ? [...s].reverse() : [...s, 1]; }); break;
        case 'json-pad-change': { const pad = rng.int(12); bytes = withHeader(headerText.trimEnd() + ' '.repeat(pad)); break; }
      }
      fs.writeFileSync(file, bytes!);
      return outcomeOf(mutation, file, () => {
        const got = snapshot(file);
        if (sameSnapshot(got, originalSnap)) return new Accepted(true);
        checkConsistent(bytes, got);
        return new Accepted(false);
      });
    },
  };
}

// --- config.json -----------------------------------------------------------------------------

const HUGE_OR_BAD_VALUES: readonly unknown[] = [
  1e6, 1e12, 2 ** 53, 1e308, 2 ** 31, 65537, 1025, -1, 0, -0.5, 64.5, 1e-300, 'NaN', 'Infinity', '-Infinity', '64', '', null, true, [], [64], {}, { a: 1 },
];
const RAW_TOKENS = ['NaN', 'Infinity', '-Infinity', '1e999', '-1e999', '1.0', '64.0', '1e2', '0x40', 'undefined', '+1'];
const CONFIG_MUTATIONS = ['delete-field', 'set-value', 'raw-token', 'model-type', 'architectures', 'truncate', 'bitflip', 'duplicate-key', 'not-object'] as const;

/** The independent check of an accepted config: every size a positive integer within CONFIG_LIMITS, numbers finite. */
function checkConfig(c: ModelConfig): void {
  const sizes: [keyof typeof CONFIG_LIMITS, number][] = [
    ['num_hidden_layers', c.layers], ['hidden_size', c.hidden], ['num_attention_heads', c.heads], ['num_key_value_heads', c.kvHeads],
    ['head_dim', c.headDim], ['intermediate_size', c.intermediate], ['vocab_size', c.vocabSize], ['max_position_embeddings', c.maxPositions],
  ];
  for (const [k, v] of sizes) if (!Number.isSafeInteger(v) || v < 1 || v > CONFIG_LIMITS[k]) throw new Silent(`${k} = ${v} accepted`);
  if (c.heads % c.kvHeads !== 0 || c.rotaryDims % 2 !== 0 || c.rotaryDims > c.headDim) throw new Silent('inconsistent heads or rotary width accepted');
  if (!(Number.isFinite(c.eps) && c.eps > 0 && Number.isFinite(c.ropeTheta) && c.ropeTheta > 0)) throw new Silent('eps or rope theta not positive and finite');
  if (c.slidingWindow !== null && !(Number.isSafeInteger(c.slidingWindow) && c.slidingWindow > 0)) throw new Silent('bad sliding window accepted');
  const specs = modelParams(c);
  if (specs.length > 12 * c.layers + 8) throw new Silent('table larger than the layers allow');
}

export function configTarget(fixtures: string): FuzzTarget {
  const originals: { json: Record<string, unknown>; parsed: ModelConfig }[] = [];
  return {
    name: 'config.json',
    setup() {
      for (const model of ['gpt_neox', 'mistral', 'reward']) {
        const file = path.join(fixtures, model, 'config.json');
        originals.push({ json: JSON.parse(fs.readFileSync(file, 'utf8')), parsed: loadConfig(file) });
      }
    },
    async run(rng, caseDir) {
      const { json, parsed } = rng.pick(originals);
      const mutation = rng.pick(CONFIG_MUTATIONS);
      const keys = Object.keys(json);
      const k = rng.pick(keys);
      const j = structuredClone(json);
      let text: string;
      switch (mutation) {
        case 'delete-field': delete j[k]; text = JSON.stringify(j); break;
        case 'set-value': j[k] = rng.pick(HUGE_OR_BAD_VALUES); text = JSON.stringify(j); break;
        case 'raw-token': j[k] = '@@'; text = JSON.stringify(j).replace('"@@"', rng.pick(RAW_TOKENS)); break;
        case 'model-type': j.model_type = rng.pick(['llama', 'GPT_NEOX', '', null, 3, 'mistral', 'gpt_neox', '__proto__']); text = JSON.stringify(j); break;
        case 'architectures': j.architectures = rng.pick([['LlamaForCausalLM'], [], ['MistralForSequenceClassification'], 'GPTNeoXForCausalLM', [1], null]); text = JSON.stringify(j); break;
        case 'truncate': { const s = JSON.stringify(json); text = s.slice(0, rng.int(s.length)); break; }
        case 'bitflip': { const b = Buffer.from(JSON.stringify(json)); b[rng.int(b.length)]! ^= 1 << rng.int(7); text = b.toString('latin1'); break; }
        case 'duplicate-key': text = JSON.stringify(json).replace(/\}$/, `,${JSON.stringify(k)}:${JSON.stringify(rng.pick(HUGE_OR_BAD_VALUES))}}`); break;
        case 'not-object': text = rng.pick(['[]', 'null', '"config"', '42', '', '{}']); break;
      }
      const file = path.join(caseDir, 'config.json');
      fs.writeFileSync(file, text!);
      return outcomeOf(mutation, file, () => {
        const c = loadConfig(caseDir);
        if (deepEqual(c, parsed)) return new Accepted(true);
        checkConfig(c);
        return new Accepted(false);
      });
    },
  };
}

// --- model.safetensors.index.json ------------------------------------------------------------

const INDEX_MUTATIONS = [
  'missing-shard', 'dir', 'dot', 'empty', 'outside-link', 'parent', 'absolute', 'duplicate-key', 'wrong-shard',
  'delete-entry', 'extra-entry', 'value-type', 'weight-map-type', 'truncate', 'bitflip', 'same-shard-two-names',
] as const;

export function indexTarget(): FuzzTarget {
  let base: string;
  const weightMap: Record<string, string> = {};
  let snap: Map<string, Uint8Array>;
  return {
    name: 'index.json',
    setup(dir) {
      base = path.join(dir, 'index-original');
      fs.mkdirSync(base, { recursive: true });
      writeSafetensors(path.join(base, 'model-00001-of-00002.safetensors'), { 'a.weight': { shape: [2], data: Float32Array.of(1, 2) }, 'b.weight': { dtype: 'BF16', shape: [1], data: Float32Array.of(-2) } });
      writeSafetensors(path.join(base, 'model-00002-of-00002.safetensors'), { 'c.weight': { shape: [3], data: Int32Array.of(7, 8, 9) } });
      Object.assign(weightMap, { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
      fs.writeFileSync(path.join(base, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 14 }, weight_map: weightMap }));
      const f = SafetensorsFolder.open(base);
      snap = new Map(f.names().map((n) => [n, f.readRaw(n)]));
      f.close();
    },
    async run(rng, caseDir) {
      for (const s of fs.readdirSync(base)) if (s.endsWith('.safetensors')) fs.copyFileSync(path.join(base, s), path.join(caseDir, s));
      fs.mkdirSync(path.join(caseDir, 'sub'));
      fs.symlinkSync('/etc', path.join(caseDir, 'etc'));
      const mutation = rng.pick(INDEX_MUTATIONS);
      const wm: Record<string, unknown> = { ...weightMap };
      const t = rng.pick(Object.keys(weightMap));
      let text: string | undefined;
      switch (mutation) {
        case 'missing-shard': wm[t] = 'model-00003-of-00002.safetensors'; break;
        case 'dir': wm[t] = 'sub'; break;
        case 'dot': wm[t] = rng.pick(['.', './', 'sub/.', 'sub/']); break;
        case 'empty': wm[t] = ''; break;
        case 'outside-link': wm[t] = rng.pick(['etc/passwd', 'etc/hostname', 'etc']); break;
        case 'parent': wm[t] = `../${path.basename(caseDir)}/model-00001-of-00002.safetensors`; break;
        case 'absolute': wm[t] = path.join(caseDir, 'model-00001-of-00002.safetensors'); break;
        case 'duplicate-key': text = JSON.stringify({ weight_map: wm }).replace(/\}\}$/, `,${JSON.stringify(t)}:${JSON.stringify(rng.pick(Object.values(weightMap)))}}}`); break;
        case 'wrong-shard': wm[t] = weightMap[t] === 'model-00001-of-00002.safetensors' ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors'; break;
        case 'delete-entry': delete wm[t]; break;
        case 'extra-entry': wm['z.weight'] = rng.pick(Object.values(weightMap)); break;
        case 'value-type': wm[t] = rng.pick([1, null, ['x'], { f: 'x' }, true]); break;
        case 'weight-map-type': text = JSON.stringify({ weight_map: rng.pick([null, [], 'x', 1]) }); break;
        case 'truncate': { const s = JSON.stringify({ weight_map: wm }); text = s.slice(0, rng.int(s.length)); break; }
        case 'bitflip': { const b = Buffer.from(JSON.stringify({ weight_map: wm })); b[rng.int(b.length)]! ^= 1 << rng.int(7); text = b.toString('latin1'); break; }
        case 'same-shard-two-names': wm[t] = `./${weightMap[t]}`; break;
      }
      const file = path.join(caseDir, 'model.safetensors.index.json');
      fs.writeFileSync(file, text ?? JSON.stringify({ metadata: { total_size: 14 }, weight_map: wm }));
      return outcomeOf(mutation, file, () => {
        const f = SafetensorsFolder.open(caseDir);
        try {
          const got = new Map(f.names().map((n) => [n, f.readRaw(n)]));
          for (const g of f.files) {
            const real = fs.realpathSync(g.path);
            if (!real.startsWith(fs.realpathSync(caseDir) + path.sep)) throw new Silent(`opened ${real}, outside the folder`);
          }
          // The index is authoritative: what it lists must be the originals' tensors, byte for byte.
          for (const [n, b] of got) if (!snap.has(n) || !same(b, snap.get(n)!)) throw new Silent(`tensor ${n} differs`);
          return new Accepted(got.size === snap.size);
        } finally {
          f.close();
        }
      });
    },
  };
}

// --- JSONL datasets --------------------------------------------------------------------------

const RECORDS: Record<string, unknown>[] = [
  { chosen: '\n\nHuman: hi\n\nAssistant: hello', rejected: '\n\nHuman: hi\n\nAssistant: go away' },
  { real: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], generated: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] },
  { messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] },
  { prompt: 'p', response: 'r' },
];
const JSONL_MUTATIONS = ['broken-json', 'missing-field', 'wrong-type', 'huge-line', 'not-object', 'bitflip', 'blank-lines', 'nested-wrong-type', 'empty-strings', 'mixed-formats'] as const;

export function jsonlTarget(hugeLineBytes: number): FuzzTarget {
  return {
    name: 'jsonl',
    setup() {},
    async run(rng, caseDir) {
      const rec = rng.pick(RECORDS);
      const lines = Array.from({ length: 1 + rng.int(4) }, () => JSON.stringify(rec));
      const mutation = rng.pick(JSONL_MUTATIONS);
      const i = rng.int(lines.length);
      const r = structuredClone(rec);
      const k = rng.pick(Object.keys(r));
      const bad = () => rng.pick([1, null, true, [], {}, [1], 'x', -0.5]);
      switch (mutation) {
        case 'broken-json': lines[i] = lines[i]!.slice(0, rng.int(lines[i]!.length)); break;
        case 'missing-field': delete r[k]; lines[i] = JSON.stringify(r); break;
        case 'wrong-type': r[k] = bad(); lines[i] = JSON.stringify(r); break;
        case 'huge-line': r[k] = typeof r[k] === 'string' ? `${r[k]}${'x'.repeat(hugeLineBytes)}` : r[k]; lines[i] = JSON.stringify(r); break;
        case 'not-object': lines[i] = JSON.stringify(bad()); break;
        case 'bitflip': { const b = Buffer.from(lines[i]!); b[rng.int(b.length)]! ^= 1 << rng.int(8); lines[i] = b.toString('latin1'); break; }
        case 'blank-lines': lines.splice(i, 0, '', '   ', '\t'); break;
        case 'nested-wrong-type': {
          const arr = Object.values(r).find(Array.isArray) as unknown[] | undefined;
          if (arr) arr[rng.int(arr.length)] = rng.chance(0.5) ? bad() : { role: bad(), content: 'x' };
          else r[k] = { nested: true };
          lines[i] = JSON.stringify(r);
          break;
        }
        case 'empty-strings': r[k] = ''; lines[i] = JSON.stringify(r); break;
        case 'mixed-formats': lines[i] = JSON.stringify(rng.pick(RECORDS)); break;
      }
      const file = path.join(caseDir, 'data.jsonl');
      fs.writeFileSync(file, lines.join('\n') + (rng.chance(0.5) ? '\n' : ''));
      return outcomeOf(mutation, file, async () => {
        const res = await readExamples(file);
        for (const ex of res.examples) {
          const okPrompt = typeof ex.prompt === 'string' || (Array.isArray(ex.prompt) && ex.prompt.every((m) => typeof m.role === 'string' && typeof m.content === 'string'));
          if (!okPrompt || typeof ex.response !== 'string' || ex.response === '' || (ex.rejected !== undefined && (typeof ex.rejected !== 'string' || ex.rejected === ''))) {
            throw new Silent(`inconsistent example at ${ex.source.line}`);
          }
        }
        return new Accepted(mutation === 'blank-lines' && res.examples.length === lines.filter((l) => l.trim() !== '').length);
      });
    },
  };
}

// --- adapter_config.json ---------------------------------------------------------------------

const ADAPTER_MUTATIONS = ['peft-type', 'r', 'alpha', 'dropout', 'targets', 'delete-field', 'truncate', 'not-object', 'bias', 'rslora'] as const;

/** Fuzzes models/peft.ts readLoraConfig (LoraError is its typed error; the message must name the file). */
export async function adapterTarget(fixtures: string): Promise<FuzzTarget> {
  const peft = await import('../../models/peft.ts');
  const model = loadConfig(path.join(fixtures, 'gpt_neox', 'config.json'));
  const base = { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.05, target_modules: ['query_key_value'], bias: 'none', fan_in_fan_out: false, use_rslora: false, base_model_name_or_path: '', inference_mode: true, modules_to_save: null };
  const badNumbers: unknown[] = ['4', null, true, [], {}, -1, 0, 2.5, 1e9, 2 ** 53, -0.5, 1, 1e308];
  return {
    name: 'adapter_config.json',
    setup() {},
    async run(rng, caseDir) {
      const mutation = rng.pick(ADAPTER_MUTATIONS);
      const j: Record<string, unknown> = structuredClone(base);
      let text: string | undefined;
      switch (mutation) {
        case 'peft-type': j.peft_type = rng.pick(['lora', 'IA3', 'PREFIX_TUNING', null, 1, 'LORA']); break;
        case 'r': j.r = rng.pick(badNumbers); break;
        case 'alpha': j.lora_alpha = rng.pick(badNumbers); break;
        case 'dropout': j.lora_dropout = rng.pick([...badNumbers, 0.999, 1]); break;
        case 'targets': j.target_modules = rng.pick([[], ['q_proj'], 'query_key_value', '.*', [1], null, 'all-linear', ['dense', 'dense']]); break;
        case 'delete-field': delete j[rng.pick(Object.keys(j))]; break;
        case 'truncate': { const s = JSON.stringify(j); text = s.slice(0, rng.int(s.length)); break; }
        case 'not-object': text = rng.pick(['[]', 'null', '"x"', '1']); break;
        case 'bias': j.bias = rng.pick(['all', 'lora_only', null, 1]); break;
        case 'rslora': j.use_rslora = rng.pick(['yes', 1, null, true]); break;
      }
      const file = path.join(caseDir, peft.ADAPTER_CONFIG_FILE);
      fs.writeFileSync(file, text ?? JSON.stringify(j));
      return outcomeOf(mutation, file, () => {
        const c = peft.readLoraConfig(caseDir, model);
        // A rank beyond any hidden size juice accepts is an unbounded size, not an adapter.
        if (!(Number.isSafeInteger(c.r) && c.r >= 1 && c.r <= CONFIG_LIMITS.hidden_size) || !Number.isFinite(c.alpha) || !(c.dropout >= 0 && c.dropout < 1)) {
          throw new Silent(`accepted r=${c.r} alpha=${c.alpha} dropout=${c.dropout}`);
        }
        return new Accepted(deepEqual(c.targetModules, base.target_modules) && c.r === base.r && c.alpha === base.lora_alpha && c.dropout === base.lora_dropout && !c.useRslora);
      }, { LoraError: (e) => e.message.includes(file) });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Runner

export interface FuzzReport {
  cases: number;
  /** target -> outcome -> count */
  counts: Record<string, Record<string, number>>;
  /** target -> mutation -> outcome -> count */
  byMutation: Record<string, Record<string, Record<string, number>>>;
  failures: { target: string; case: number; mutation: string; outcome: string; detail?: string }[];
}

export interface FuzzOptions {
  cases: number;
  seed?: number;
  /** A case slower than this is a failure (`FAIL:slow`). */
  caseTimeoutMs?: number;
  /** Size of the long string in a JSONL 'huge-line' case. */
  hugeLineBytes?: number;
  fixtures: string;
  /** Only these targets (by name). */
  only?: string[];
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const seed = opts.seed ?? 1;
  const timeout = opts.caseTimeoutMs ?? 2000;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-fuzz-'));
  try {
    let targets: FuzzTarget[] = [safetensorsTarget(), configTarget(opts.fixtures), indexTarget(), jsonlTarget(opts.hugeLineBytes ?? 1 << 20), await adapterTarget(opts.fixtures)];
    if (opts.only) targets = targets.filter((t) => opts.only!.includes(t.name));
    for (const t of targets) await t.setup(root);
    const report: FuzzReport = { cases: opts.cases, counts: {}, byMutation: {}, failures: [] };
    for (const t of targets) { report.counts[t.name] = {}; report.byMutation[t.name] = {}; }
    for (let i = 0; i < opts.cases; i++) {
      const target = targets[i % targets.length]!;
      const caseDir = path.join(root, `case-${i}`);
      fs.mkdirSync(caseDir);
      const start = performance.now();
      let r = await target.run(new Prng(caseSeed(seed, i)), caseDir);
      const ms = performance.now() - start;
      if (ms > timeout && !r.outcome.startsWith('FAIL')) r = { ...r, outcome: 'FAIL:slow', detail: `${ms.toFixed(0)} ms` };
      const c = report.counts[target.name]!;
      c[r.outcome] = (c[r.outcome] ?? 0) + 1;
      const m = (report.byMutation[target.name]![r.mutation] ??= {});
      m[r.outcome] = (m[r.outcome] ?? 0) + 1;
      if (r.outcome.startsWith('FAIL')) report.failures.push({ target: target.name, case: i, mutation: r.mutation, outcome: r.outcome, detail: r.detail });
      fs.rmSync(caseDir, { recursive: true, force: true });
    }
    return report;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** The counts as a table: one line per target and outcome. */
export function formatReport(r: FuzzReport, byMutation = false): string {
  const lines = [`${r.cases} cases`];
  for (const [t, c] of Object.entries(r.counts)) {
    lines.push(`${t}:`);
    for (const [o, n] of Object.entries(c).sort((a, b) => b[1] - a[1])) lines.push(`  ${o.padEnd(32)} ${n}`);
    if (!byMutation) continue;
    for (const [m, os] of Object.entries(r.byMutation[t]!).sort()) {
      lines.push(`    ${m.padEnd(26)} ${Object.entries(os).sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o} ${n}`).join(', ')}`);
    }
  }
  if (r.failures.length > 0) {
    lines.push(`${r.failures.length} failures (first 20):`);
    for (const f of r.failures.slice(0, 20)) lines.push(`  case ${f.case} ${f.target} ${f.mutation}: ${f.outcome} ${f.detail ?? ''}`);
  }
  return lines.join('\n');
}
