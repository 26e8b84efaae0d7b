// No GPU: the layers import only downwards (kernels < engine < models < train < bin) and no module imports itself
// through others at run time. Files are found, not listed, so that the test follows the tree as it changes.
// `import type` counts for cycles too: it is erased before anything runs, but a circle of types is still a circle
// of modules that cannot be understood, moved or tested one without the other.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LAYERS = ['kernels', 'engine', 'models', 'train', 'bin'] as const;
type Layer = (typeof LAYERS)[number];

function tsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

interface Import { spec: string; typeOnly: boolean }

/** What a file imports or re-exports (static, side-effect and dynamic with a string literal). */
function parseImports(source: string): Import[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/[^\n]*$/gm, '');
  return [
    ...[...code.matchAll(/^\s*(?:import|export)\b(\s+type\b)?[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm)].map((m) => ({ spec: m[2]!, typeOnly: !!m[1] })),
    ...[...code.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)].map((m) => ({ spec: m[1]!, typeOnly: false })),
    ...[...code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => ({ spec: m[1]!, typeOnly: false })),
  ];
}

function importsOf(source: string): string[] { return [...new Set(parseImports(source).map((i) => i.spec))]; }

interface Edge { from: string; to: string; spec: string; typeOnly: boolean }

function layerOf(file: string): Layer | null {
  const top = relative(ROOT, file).split(/[\\/]/)[0];
  return (LAYERS as readonly string[]).includes(top!) ? (top as Layer) : null;
}

const files = LAYERS.flatMap((l) => tsFiles(join(ROOT, l)));
const edges: Edge[] = files.flatMap((from) => parseImports(readFileSync(from, 'utf8')).map(({ spec, typeOnly }) => ({
  from, spec, typeOnly, to: spec.startsWith('.') ? resolve(dirname(from), spec) : spec,
})));
const rel = (f: string) => (f.startsWith('/') ? relative(ROOT, f) : f);

test('the parser finds every form of import', () => {
  const src = `import { a } from './a.ts';\nimport type { B } from "../b.ts";\nexport { c } from './c.ts';\nimport './side.ts';\n`
    + `import {\n  d,\n  e,\n} from 'node:fs';\nconst m = await import('./lazy.ts');\n// import { no } from './commented.ts';\n`;
  assert.equal(importsOf(src).sort(), ['../b.ts', './a.ts', './c.ts', './lazy.ts', './side.ts', 'node:fs'].sort());
  assert.equal(parseImports(src).filter((i) => i.typeOnly).map((i) => i.spec), ['../b.ts']);
});

test('the layers hold files', () => {
  for (const l of ['kernels', 'engine', 'models'] as const) assert.ok(files.some((f) => layerOf(f) === l), `no .ts under ${l}/`);
});

test('kernels/ imports nothing outside kernels/ (node: builtins allowed)', () => {
  const bad = edges.filter((e) => layerOf(e.from) === 'kernels' && (e.to.startsWith('/') ? layerOf(e.to) !== 'kernels' || !e.to.startsWith(join(ROOT, 'kernels')) : !e.to.startsWith('node:')));
  assert.equal(bad.map((e) => `${rel(e.from)} -> ${e.spec}`), []);
});

test('each layer imports only from the layers below it', () => {
  const rank = (l: Layer) => LAYERS.indexOf(l);
  const bad = edges.filter((e) => {
    const a = layerOf(e.from), b = e.to.startsWith('/') ? layerOf(e.to) : null;
    return a && b && rank(b) > rank(a);
  });
  assert.equal(bad.map((e) => `${rel(e.from)} -> ${rel(e.to)}`), []);
});

test('the import graph, type-only imports included, has no cycle', () => {
  const next = new Map<string, string[]>();
  for (const e of edges) if (e.to.startsWith('/') && files.includes(e.to)) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  let cycle: string[] | null = null;
  const visit = (f: string): void => {
    if (cycle || state.get(f) === 'done') return;
    if (state.get(f) === 'open') { cycle = [...stack.slice(stack.indexOf(f)), f]; return; }
    state.set(f, 'open');
    stack.push(f);
    for (const g of next.get(f) ?? []) visit(g);
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) visit(f);
  assert.is(cycle && (cycle as string[]).map(rel).join(' -> '), null, 'import cycle');
});

test.run();
