// No GPU: every kernel spec states the same bindings, params and constants as its WGSL, and its WGSL is composed
// by the one mechanism (kernels/spec.ts wgsl()) with every placeholder declared and substituted.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { wgsl, type Kernel } from '../../kernels/spec.ts';
import { slotKernel, type SlotKernelSpec } from '../../kernels/tensor_slots.ts';

const dir = fileURLToPath(new URL('../../kernels/', import.meta.url));

function isKernel(v: unknown): v is Kernel {
  return !!v && typeof v === 'object' && typeof (v as Kernel).source === 'string' && Array.isArray((v as Kernel).inputs);
}

function isSlotKernelSpec(v: unknown): v is SlotKernelSpec {
  return !!v && typeof v === 'object' && Array.isArray((v as SlotKernelSpec).slotFields) && typeof (v as SlotKernelSpec).call === 'function';
}

/**
 * A module's kernels: those it exports, alone or as a family of variants (an object of them, e.g. words and quads), and
 * the variants of 1 to 3 slots of the slot kernels it exports (kernels/tensor_slots.ts).
 */
function kernelsOf(mod: Record<string, unknown>): Kernel[] {
  const values = Object.values(mod);
  const families = values.filter((v) => !!v && typeof v === 'object' && !isKernel(v) && !isSlotKernelSpec(v) && !Array.isArray(v)).flatMap((v) => Object.values(v as object).filter(isKernel));
  return [...values.filter(isKernel), ...families, ...values.filter(isSlotKernelSpec).flatMap((spec) => [1, 2, 3].map((n) => slotKernel(spec, n)))];
}

interface ParsedShader { bindings: { index: number; name: string; kind: string }[]; params: [string, string][]; overrides: string[] }

function parse(source: string): ParsedShader {
  const code = source.replace(/\/\/[^\n]*/g, '');
  const bindings = [...code.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var<([^>]+)>\s*(\w+)\s*:/g)]
    .map((m) => ({ index: Number(m[1]), kind: m[2].replace(/\s/g, ''), name: m[3] }))
    .sort((a, b) => a.index - b.index);
  const fieldsOf = (name: string) => {
    const struct = new RegExp(`struct\\s+${name}\\s*\\{([^}]*)\\}`).exec(code);
    return struct ? [...struct[1].matchAll(/(\w+)\s*:\s*(\w+)/g)].map((m) => [m[1], m[2]] as [string, string]) : [];
  };
  // A slot kernel's `slots: array<Slot, SLOTS>` is each slot's fields in turn, suffixed by the slot's index.
  const slots = Number(/const\s+SLOTS\s*=\s*(\d+)u;/.exec(code)?.[1] ?? 0);
  const params = fieldsOf('Params').flatMap(([n, t]) => (n === 'slots' && t === 'array'
    ? Array.from({ length: slots }, (_, k) => fieldsOf('Slot').map(([f, ft]) => [`${f}${k}`, ft] as [string, string])).flat()
    : [[n, t] as [string, string]]));
  const declared = [...code.matchAll(/override\s+(\w+)[^=;]*(?:=([^;]*))?;/g)].map((m) => ({ name: m[1], init: m[2] ?? '' }));
  // An override computed from other overrides (e.g. WG_X = TILE_N / THREAD_N) is not set by the host.
  const names = declared.map((d) => d.name);
  const overrides = declared.filter((d) => !names.some((n) => n !== d.name && new RegExp(`\\b${n}\\b`).test(d.init))).map((d) => d.name);
  return { bindings, params, overrides };
}

// spec.ts, dtype.ts, matmul_shape.ts and tensor_slots.ts describe kernels and hold none.
const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !['spec.ts', 'dtype.ts', 'matmul_shape.ts', 'tensor_slots.ts'].includes(f));

test('every kernel module exports at least one kernel', async () => {
  for (const f of files) {
    const mod = await import(`../../kernels/${f}`);
    assert.ok(kernelsOf(mod).length > 0, `${f} exports no Kernel`);
  }
});

for (const f of files) {
  test(`spec agrees with shader: ${f}`, async () => {
    const mod = await import(`../../kernels/${f}`);
    for (const k of kernelsOf(mod)) {
      const s = parse(k.source);
      // Binding i is the i-th of inputs, outputs, params; an absent input or output keeps its number and is not declared.
      const absent = k.absent ?? [];
      for (const name of absent) assert.ok(k.inputs.includes(name) || k.outputs.includes(name), `${k.name}: absent '${name}' is neither an input nor an output`);
      const expected = [
        ...k.inputs.map((name) => ({ name, kind: 'storage,read' })),
        ...k.outputs.map((name) => ({ name, kind: 'storage,read_write' })),
        ...(k.params.length ? [{ name: 'params', kind: 'uniform' }] : []),
      ].map((b, index) => ({ index, ...b })).filter((b) => !(b.kind !== 'uniform' && absent.includes(b.name)));
      assert.equal(s.bindings.map((b) => b.index), expected.map((b) => b.index), `${k.name}: binding indices`);
      assert.equal(s.bindings.map((b) => ({ name: b.name, kind: b.kind })), expected.map(({ name, kind }) => ({ name, kind })), `${k.name}: bindings`);
      assert.not.match(k.source, /\{\{|\}\}/, `${k.name}: a placeholder is left`);
      assert.equal(s.params, k.params.map(([n, t]) => [n, t]), `${k.name}: Params fields`);
      assert.equal([...s.overrides].sort(), [...(k.constants ?? [])].sort(), `${k.name}: override constants`);
      assert.ok(/@compute[^f]*fn\s+main\s*\(/.test(k.source), `${k.name}: entry point main`);
    }
  });
}

test('every placeholder in a .wgsl file is one {{NAME}} marker, and no .wgsl file holds a directive (specs add them)', () => {
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.wgsl'))) {
    const code = readFileSync(`${dir}${f}`, 'utf8').replace(/\/\/[^\n]*/g, '');
    assert.not.match(code.replace(/\{\{\w+\}\}/g, ''), /\{\{|\}\}/, `${f}: a malformed placeholder`);
    assert.not.match(code, /^\s*(enable|requires|diagnostic)\b/m, `${f}: a directive (declare it in the spec's wgsl() call)`);
  }
});

test('wgsl(): placeholders must be declared and used, and are all substituted', () => {
  const url = new URL('../../kernels/spec.ts', import.meta.url).href;
  const source = wgsl(url, 'attention_forward.wgsl', { includes: ['attention_visibility.wgsl'], placeholders: { STORAGE: 'f16' }, directives: ['enable f16;'] });
  assert.ok(source.startsWith('enable f16;\n'));
  assert.match(source, /alias Storage = f16;/);
  assert.match(source, /fn keyVisible/);
  assert.throws(() => wgsl(url, 'attention_forward.wgsl', { includes: ['attention_visibility.wgsl'] }), /\{\{STORAGE\}\} have no value/);
  assert.throws(() => wgsl(url, 'fill.wgsl', { placeholders: { STORAGE: 'f32' } }), /STORAGE appear nowhere/);
});

test('the parser sees a mismatch', () => {
  const s = parse('@group(0) @binding(0) var<storage, read> a: array<f32>;\nstruct Params { n: u32, x: f32 }\noverride WG: u32 = 64u;\noverride T;\noverride HALF: u32 = WG / 2u;');
  assert.equal(s.bindings, [{ index: 0, kind: 'storage,read', name: 'a' }]);
  assert.equal(s.params, [['n', 'u32'], ['x', 'f32']]);
  assert.equal(s.overrides, ['WG', 'T']);
});

test.run();
