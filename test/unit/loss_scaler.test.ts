// No GPU: train/loss_scaler.ts follows torch.cuda.amp.GradScaler's update rule (backoff and a reset tracker on a
// non-finite step, growth after growthInterval clean steps, no growth past float32's range), its state round-trips
// and a bad state is refused; --mixed-precision's options map onto it with torch's factors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GRAD_SCALER_DEFAULTS, LossScaler, LossScalerError } from '../../train/loss_scaler.ts';
import { lossScalingOf, type TrainingOptions } from '../../train/run_config.ts';

test("torch's defaults: 2^16, x2 after 2000 clean steps, x0.5 on an overflow", () => {
  assert.equal(GRAD_SCALER_DEFAULTS, { initScale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000 });
  const s = new LossScaler();
  for (let k = 0; k < 1999; k++) s.update(false);
  assert.is(s.scale, 65536);
  s.update(false);
  assert.is(s.scale, 131072);
  assert.is(s.growthTracker, 0);
});

test('an overflow halves the scale and restarts the count of clean steps', () => {
  const s = new LossScaler({ ...GRAD_SCALER_DEFAULTS, growthInterval: 3 });
  s.update(false); s.update(false);
  assert.is(s.growthTracker, 2);
  s.update(true);
  assert.equal([s.scale, s.growthTracker], [32768, 0]);
  s.update(true);
  assert.is(s.scale, 16384);
  s.update(false); s.update(false);
  assert.is(s.scale, 16384, 'two clean steps after the overflow: not yet');
  s.update(false);
  assert.is(s.scale, 32768, 'the third grows it');
});

test('the scale is a float32: 2^100 halves exactly; growth stops below float32 overflow', () => {
  const s = new LossScaler({ ...GRAD_SCALER_DEFAULTS, initScale: 2 ** 100 });
  for (let k = 0; k < 5; k++) s.update(true);
  assert.is(s.scale, 2 ** 95);
  const top = new LossScaler({ ...GRAD_SCALER_DEFAULTS, initScale: 2 ** 127, growthInterval: 1 });
  top.update(false);
  assert.equal([top.scale, top.growthTracker], [2 ** 127, 0], 'x2 would be inf: kept, the tracker reset (torch)');
  const odd = new LossScaler({ initScale: 3, growthFactor: 1.1, backoffFactor: 0.3, growthInterval: 1 });
  odd.update(false);
  assert.is(odd.scale, Math.fround(Math.fround(3) * 1.1));
});

test('state round trip; a bad state or option is refused', () => {
  const a = new LossScaler({ ...GRAD_SCALER_DEFAULTS, growthInterval: 4 });
  a.update(true); a.update(false); a.update(false);
  const state = JSON.parse(JSON.stringify(a.stateDict()));
  assert.equal(state, { scale: 32768, growth_tracker: 2 });
  const b = new LossScaler({ ...GRAD_SCALER_DEFAULTS, growthInterval: 4 });
  b.loadStateDict(state);
  for (const s of [a, b]) { s.update(false); s.update(false); }
  assert.equal(b.stateDict(), a.stateDict());
  assert.is(b.scale, 65536);
  assert.throws(() => b.loadStateDict({ scale: 0, growth_tracker: 0 }), (e: Error) => e instanceof LossScalerError);
  assert.throws(() => b.loadStateDict({ scale: 1.1, growth_tracker: 0 }), /positive float32/);
  assert.throws(() => b.loadStateDict({ scale: 2, growth_tracker: 4 }), /growth_tracker 4/);
  assert.throws(() => new LossScaler({ ...GRAD_SCALER_DEFAULTS, backoffFactor: 1 }), /backoffFactor/);
  assert.throws(() => new LossScaler({ ...GRAD_SCALER_DEFAULTS, growthInterval: 0 }), /growthInterval/);
});

test('--mixed-precision: off is f32 (no scaler); f16 takes the first scale and interval, torch\'s factors', () => {
  const o = { 'mixed-precision': 'off', 'loss-scale-init': 1024, 'loss-scale-growth-interval': 7 } as TrainingOptions;
  assert.is(lossScalingOf(o), undefined);
  assert.equal(lossScalingOf({ ...o, 'mixed-precision': 'f16' }), { initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 7 });
});

test.run();
