// RMSprop against a float64 torch.optim.RMSprop reference: several steps, coupled weight decay, clipping's gradScale.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deviceLimits } from '../../engine/launch.ts';
import { ledger } from '../../engine/ledger.ts';
import { RMSprop, type RMSpropOptions } from '../../engine/optim.ts';
import { pool } from '../../engine/pool.ts';
import { Tensor } from '../../engine/tensor.ts';
import { rmspropSlots } from '../../kernels/rmsprop.ts';
import { assertClose, download, initGpu, randn } from '../support/util.ts';

const FORWARD_TOL = 1e-5;
const UPDATE_TOL = 1e-4;

/** float64 torch.optim.RMSprop (momentum 0, centered false) on one parameter; weight decay only where `decay`. */
class ReferenceRMSprop {
  v: Float64Array;
  constructor(readonly p: Float64Array, readonly decay: boolean, readonly o: RMSpropOptions) { this.v = new Float64Array(p.length); }

  step(grad: ArrayLike<number>, gradScale = 1): void {
    const { lr, alpha, eps, weightDecay } = this.o;
    for (let i = 0; i < this.p.length; i++) {
      const g = gradScale * grad[i] + (this.decay ? weightDecay * this.p[i] : 0);
      this.v[i] = alpha * this.v[i] + (1 - alpha) * g * g;
      this.p[i] -= lr * g / (Math.sqrt(this.v[i]) + eps);
    }
  }
}

function parameter(data: ArrayLike<number>): Tensor {
  const t = Tensor.fromArray(data, [data.length]);
  t.requiresGrad = true;
  return t;
}

const difference = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (x, i) => x - b[i]);

test('float64 reference: five steps, weight decay on some, a gradient scale on some steps, a late parameter', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const o: RMSpropOptions = { lr: 1e-2, alpha: 0.99, eps: 1e-8, weightDecay: 0.1 };
  const specs = [{ name: 'w', numel: 130, decay: true }, { name: 'b', numel: 7, decay: false }, { name: 'one', numel: 1, decay: true },
    { name: 'late', numel: 33, decay: true }];
  const refs = specs.map((s, i) => new ReferenceRMSprop(randn(s.numel, 200 + i), s.decay, o));
  const params = refs.map((r) => parameter(r.p));
  const opt = new RMSprop(specs.map((s, i) => ({ name: s.name, param: params[i], decay: s.decay })), o);
  const scales = [1, 0.5, 1, 0.8125, 1];
  ledger.reset();
  for (let step = 0; step < scales.length; step++) {
    const before = await Promise.all(params.map(download));
    specs.forEach((s, i) => {
      if (s.name === 'late' && step === 0) return; // no gradient: skipped, no state yet
      const g = randn(s.numel, 3000 * step + i, 0.1 + i);
      params[i].grad = Tensor.fromArray(g, [s.numel]);
      refs[i].step(g, scales[step]);
    });
    opt.step(scales[step]);
    opt.zeroGrad();
    for (const [i, s] of specs.entries()) {
      const ours = await download(params[i]);
      assertClose(ours, refs[i].p, FORWARD_TOL, `${s.name} after step ${step + 1}`);
      if (!(s.name === 'late' && step === 0))
        assertClose(difference(ours, before[i]), difference(refs[i].p, before[i]), UPDATE_TOL, `${s.name} update of step ${step + 1}`);
    }
  }
  const n = specs.reduce((a, s) => a + s.numel, 0);
  const rows = ledger.all().filter((e) => e.op === 'rmsprop');
  // Every step's parameters in dispatches of rmspropSlots (RMSprop has no bias correction: 'late', a step behind, joins them).
  const dispatches = Math.ceil(3 / rmspropSlots(deviceLimits())) + (scales.length - 1) * Math.ceil(4 / rmspropSlots(deviceLimits()));
  assert.equal(rows.map((e) => [e.phase, e.dispatches, e.flops]), [['optimizer', dispatches, 12 * (n * scales.length - 33)]]);
  const state = await opt.stateDict();
  assert.is(state.kind, 'rmsprop');
  assert.equal(state.step, { w: 5, b: 5, one: 5, late: 4 });
  specs.forEach((s, i) => assertClose(state.tensors[`${s.name}.square_avg`], refs[i].v, FORWARD_TOL, `${s.name}.square_avg`));
  // A restored optimizer continues identically.
  const copies = await Promise.all(params.map(async (p) => parameter(await p.toArray())));
  const restored = new RMSprop(specs.map((s, i) => ({ name: s.name, param: copies[i], decay: s.decay })), o);
  restored.loadStateDict(state);
  for (const [ps, optimizer] of [[params, opt], [copies, restored]] as const) {
    ps.forEach((t, i) => { t.grad = Tensor.fromArray(randn(specs[i].numel, 99 + i), [specs[i].numel]); });
    optimizer.step(0.25);
    optimizer.zeroGrad();
  }
  const bitsOf = async (ts: Tensor[]) => Promise.all(ts.map(async (t) => [...new Uint32Array((await t.toArray()).buffer, 0, t.numel)]));
  assert.equal(await bitsOf(copies), await bitsOf(params));
  opt.dispose(); restored.dispose();
  for (const p of [...params, ...copies]) p.dispose();
  assert.is(pool.liveBytes, base, 'states and parameters returned to the pool');
});

test('options are validated', async () => {
  await initGpu();
  const p = parameter([1, 2]);
  assert.throws(() => new RMSprop([{ name: 'p', param: p, decay: true }], { lr: -1, alpha: 1.5, eps: 1e-8, weightDecay: -0.1 }),
    /RMSprop: lr -1 < 0; alpha 1.5 not in \[0, 1\]; weightDecay -0.1 < 0/);
  p.dispose();
});

test.run();
