import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lrAt, makeSchedule, parseSchedule, resolveWarmupSteps, type Schedule } from '../../train/schedule.ts';

// transformers' lambdas (optimization.py), written out by hand; lr = base lr * lambda(step).
const hfWarmup = (step: number, w: number) => step / Math.max(1, w);
const hfLinear = (step: number, w: number, t: number) => step < w ? hfWarmup(step, w) : Math.max(0, (t - step) / Math.max(1, t - w));
const hfCosine = (step: number, w: number, t: number, cycles = 0.5) => {
  if (step < w) return hfWarmup(step, w);
  const progress = (step - w) / Math.max(1, t - w);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
};
const hfConstantWithWarmup = (step: number, w: number) => step < w ? hfWarmup(step, w) : 1;

const at = (s: Schedule, steps: number[]) => steps.map((k) => lrAt(s, k));
const close = (a: number[], b: number[], what: string) => {
  assert.is(a.length, b.length);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-15 * Math.max(1, Math.abs(b[i]!)), `${what}[${i}]: ${v} vs ${b[i]}`));
};

test('linear with warmup: specific numbers and the formula', () => {
  const s = makeSchedule({ kind: 'linear', lr: 1e-3, totalSteps: 10, warmupSteps: 2 });
  close(at(s, [0, 1, 2, 5, 9, 10, 12]), [0, 5e-4, 1e-3, 6.25e-4, 1.25e-4, 0, 0], 'linear');
  for (let k = 0; k <= 12; k++) assert.is(lrAt(s, k), 1e-3 * hfLinear(k, 2, 10));
});

test('cosine with warmup (num_cycles 0.5): specific numbers and the formula', () => {
  const s = makeSchedule({ kind: 'cosine', lr: 2, totalSteps: 10, warmupSteps: 2 });
  close(at(s, [0, 1, 2, 4, 6, 10]), [0, 1, 2, 2 * 0.8535533905932737, 1, 0], 'cosine');
  close([lrAt(s, 14)], [1], 'past the end the cosine rises again, as in transformers');
  for (let k = 0; k <= 14; k++) assert.is(lrAt(s, k), 2 * hfCosine(k, 2, 10));
  const waves = makeSchedule({ kind: 'cosine', lr: 1, totalSteps: 9, warmupSteps: 1, numCycles: 1 });
  for (let k = 0; k <= 9; k++) assert.is(lrAt(waves, k), hfCosine(k, 1, 9, 1));
  close([lrAt(waves, 9)], [1], 'one full cycle ends back at the peak');
});

test('constant and constant with warmup', () => {
  const c = makeSchedule({ kind: 'constant', lr: 3e-4, totalSteps: 100 });
  assert.equal(at(c, [0, 1, 99, 500]), [3e-4, 3e-4, 3e-4, 3e-4]);
  const cw = makeSchedule({ kind: 'constant_with_warmup', lr: 1, totalSteps: 100, warmupSteps: 4 });
  assert.equal(at(cw, [0, 1, 2, 3, 4, 50]), [0, 0.25, 0.5, 0.75, 1, 1]);
  for (let k = 0; k < 10; k++) assert.is(lrAt(cw, k), hfConstantWithWarmup(k, 4));
  assert.throws(() => makeSchedule({ kind: 'constant', lr: 1, totalSteps: 10, warmupSteps: 2 }), /constant_with_warmup/);
});

test('no warmup: the first step has the full lr; warmup 0 uses max(1, W)', () => {
  const s = makeSchedule({ kind: 'linear', lr: 1, totalSteps: 4 });
  assert.equal(at(s, [0, 1, 2, 3, 4]), [1, 0.75, 0.5, 0.25, 0]);
});

test('warmup as a ratio rounds up as get_warmup_steps; steps win over the ratio', () => {
  assert.is(resolveWarmupSteps(10, 0, 0.15), 2);      // ceil(1.5)
  assert.is(resolveWarmupSteps(1000, 0, 0.03), 30);
  assert.is(resolveWarmupSteps(100, 0, 0.07), 8);     // 0.07 * 100 = 7.000000000000001 in float64, also in Python
  assert.is(resolveWarmupSteps(100, 5, 0.5), 5);
  assert.is(resolveWarmupSteps(100), 0);
  const s = makeSchedule({ kind: 'linear', lr: 1, totalSteps: 10, warmupRatio: 0.15 });
  assert.is(s.warmupSteps, 2);
  assert.throws(() => resolveWarmupSteps(10, 0, 1.5), /ratio/);
  assert.throws(() => resolveWarmupSteps(10, 2.5), /warmup steps/);
});

test('the schedule is plain data: JSON round trip and validation', () => {
  const s = makeSchedule({ kind: 'cosine', lr: 5e-5, totalSteps: 300, warmupRatio: 0.1 });
  const back = parseSchedule(JSON.parse(JSON.stringify(s)));
  assert.equal(back, { kind: 'cosine', lr: 5e-5, warmupSteps: 30, totalSteps: 300, numCycles: 0.5 });
  assert.throws(() => parseSchedule({ ...s, kind: 'polynomial' }), /unknown kind/);
  assert.throws(() => parseSchedule({ ...s, totalSteps: 0 }), /total steps/);
  assert.throws(() => lrAt(s, -1), /step/);
  assert.throws(() => lrAt(s, 1.5), /step/);
});

test.run();
