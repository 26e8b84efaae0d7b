// `juice verify DIR`: recompute a reference folder on the GPU and report relative errors as JSON.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { backward } from '../engine/autodiff.ts';
import { initGpu } from '../engine/gpu.ts';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { Tensor, tidyAsync } from '../engine/tensor.ts';
import { layerNorm, rmsNorm } from '../engine/ops/norms.ts';
import { crossEntropy } from '../engine/ops/cross_entropy.ts';
import { AdamW } from '../engine/optim.ts';

// Tolerances of the fixtures' README: f32 on the GPU against float64 references.
export const FORWARD_TOL = 1e-5;
export const GRADIENT_TOL = 1e-4;

export interface Check { name: string; relErr: number; tol: number; pass: boolean }
export interface Report { kind: string; dir: string; pass: boolean; checks: Check[] }

export class VerifyError extends Error {}

export function relativeError(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (ours.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) { const d = ours[i] - ref[i]; num += d * d; den += ref[i] * ref[i]; }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Collects checks; `expect` names the reference tensor it compares against. */
class Checks {
  readonly list: Check[] = [];
  constructor(private readonly ref: SafetensorsFile) {}
  tensor(name: string): Float32Array | Int32Array {
    const d = this.ref.read(name);
    if (d instanceof Uint8Array) throw new VerifyError(`${this.ref.path}: tensor '${name}' has dtype U8, expected F32 or I32`);
    return d;
  }
  shape(name: string): number[] { return this.ref.info(name).shape; }
  upload(name: string, requiresGrad = false, dtype: 'f32' | 'i32' = 'f32'): Tensor {
    const t = Tensor.fromArray(this.tensor(name), this.shape(name), dtype);
    t.requiresGrad = requiresGrad;
    return t;
  }
  async expect(name: string, ours: Tensor | ArrayLike<number>, tol: number, label = name): Promise<void> {
    const values = ours instanceof Tensor ? await ours.toArray() : ours;
    const relErr = relativeError(values, this.tensor(name));
    this.list.push({ name: label, relErr, tol, pass: relErr <= tol });
  }
}

type KindRunner = (dir: string, ref: SafetensorsFile, meta: Record<string, unknown>) => Promise<Check[]>;

const KINDS: { kind: string; detect: (ref: SafetensorsFile) => boolean; run: KindRunner }[] = [
  { kind: 'ops', detect: (r) => r.has('layernorm.y') && r.has('ce.logits') && r.has('adamw.p0'), run: verifyOps },
];

async function verifyOps(_dir: string, ref: SafetensorsFile, meta: Record<string, unknown>): Promise<Check[]> {
  const c = new Checks(ref);
  const eps = Number(meta.eps ?? 1e-5);

  await tidyAsync(async () => {
    const x = c.upload('x', true), w = c.upload('weight', true), b = c.upload('bias', true), dy = c.upload('dy');
    const y = layerNorm(x, w, b, eps);
    backward(y, dy);
    await c.expect('layernorm.y', y, FORWARD_TOL);
    await c.expect('layernorm.dx', x.grad!, GRADIENT_TOL);
    await c.expect('layernorm.dweight', w.grad!, GRADIENT_TOL);
    await c.expect('layernorm.dbias', b.grad!, GRADIENT_TOL);
    for (const t of [x, w, b]) t.grad!.dispose();
  });

  await tidyAsync(async () => {
    const x = c.upload('x', true), w = c.upload('weight', true), dy = c.upload('dy');
    const y = rmsNorm(x, w, eps);
    backward(y, dy);
    await c.expect('rmsnorm.y', y, FORWARD_TOL);
    await c.expect('rmsnorm.dx', x.grad!, GRADIENT_TOL);
    await c.expect('rmsnorm.dweight', w.grad!, GRADIENT_TOL);
    for (const t of [x, w]) t.grad!.dispose();
  });

  await tidyAsync(async () => {
    const logits = c.upload('ce.logits', true), targets = c.upload('ce.targets', false, 'i32');
    const loss = crossEntropy(logits, targets, { ignoreIndex: -100 });
    backward(loss);
    await c.expect('ce.loss', loss, FORWARD_TOL);
    await c.expect('ce.dlogits', logits.grad!, GRADIENT_TOL);
    logits.grad!.dispose();
  });

  await tidyAsync(async () => {
    const cfg = (meta.adamw ?? {}) as { lr?: number; betas?: [number, number]; eps?: number; weight_decay?: number };
    const p0 = c.tensor('adamw.p0'), grads = c.tensor('adamw.grads'), after = c.tensor('adamw.after');
    const n = p0.length, steps = c.shape('adamw.grads')[0];
    const p = Tensor.fromArray(p0, [n]);
    const opt = new AdamW([{ name: 'p', param: p, decay: true }],
      { lr: cfg.lr ?? 1e-2, betas: cfg.betas ?? [0.9, 0.95], eps: cfg.eps ?? 1e-8, weightDecay: cfg.weight_decay ?? 0.1 });
    for (let s = 0; s < steps; s++) {
      p.grad = Tensor.fromArray(grads.subarray(s * n, (s + 1) * n), [n]);
      opt.step();
      p.grad.dispose();
      p.grad = null;
      // The update after[s] - p0 is what the optimizer computed; the parameter itself hides it behind p0.
      const ours = await p.toArray();
      const refUpdate = after.subarray(s * n, (s + 1) * n).map((v, i) => v - p0[i]);
      const ourUpdate = ours.map((v, i) => v - p0[i]);
      c.list.push(check(`adamw.after[${s}]`, ours, after.subarray(s * n, (s + 1) * n), GRADIENT_TOL));
      c.list.push(check(`adamw.update[${s}]`, ourUpdate, refUpdate, GRADIENT_TOL));
    }
    opt.dispose();
  });
  return c.list;
}

function check(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number): Check {
  const relErr = relativeError(ours, ref);
  return { name, relErr, tol, pass: relErr <= tol };
}

export async function verifyFolder(dirArg: string): Promise<Report> {
  const dir = resolve(dirArg);
  const refPath = join(dir, 'expected.safetensors');
  if (!existsSync(refPath)) throw new VerifyError(`${dir}: no expected.safetensors (a reference folder holds expected.safetensors and expected.json)`);
  const metaPath = join(dir, 'expected.json');
  let meta: Record<string, unknown> = {};
  if (existsSync(metaPath)) {
    try { meta = JSON.parse(readFileSync(metaPath, 'utf8')); } catch (e) { throw new VerifyError(`${metaPath}: invalid JSON: ${(e as Error).message}`); }
  }
  const ref = SafetensorsFile.open(refPath);
  try {
    const kind = KINDS.find((k) => k.detect(ref));
    if (!kind) throw new VerifyError(`${refPath}: cannot tell the kind of reference from its tensors (${ref.names().slice(0, 8).join(', ')}, ...); known kinds: ${KINDS.map((k) => k.kind).join(', ')}`);
    await initGpu();
    const checks = await kind.run(dir, ref, meta);
    return { kind: kind.kind, dir, pass: checks.length > 0 && checks.every((x) => x.pass), checks };
  } finally {
    ref.close();
  }
}

export async function verifyCommand(args: string[]): Promise<number> {
  if (args.length !== 1) { console.error('usage: juice verify DIR'); return 2; }
  const report = await verifyFolder(args[0]);
  console.log(JSON.stringify(report, null, 2));
  return report.pass ? 0 : 1;
}
