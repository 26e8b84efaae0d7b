// No GPU: Dawn flags from the environment, and the checks that they took effect.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkFlagsTookEffect, dawnFlagsFromEnv, hostWaitFromEnv } from '../../engine/gpu.ts';

test('JUICE_DAWN_FLAGS: flags separated by spaces or semicolons, values by commas', () => {
  assert.equal(dawnFlagsFromEnv({}), []);
  assert.equal(dawnFlagsFromEnv({ JUICE_DAWN_FLAGS: ' enable-dawn-features=allow_unsafe_apis,disable_robustness;disable-dawn-features=timestamp_quantization  backend=vulkan' }),
    ['enable-dawn-features=allow_unsafe_apis,disable_robustness', 'disable-dawn-features=timestamp_quantization', 'backend=vulkan']);
});

test('a malformed or unknown flag is refused with its text', () => {
  assert.throws(() => dawnFlagsFromEnv({ JUICE_DAWN_FLAGS: 'disable_robustness' }), /'disable_robustness' is not a Dawn flag/);
  assert.throws(() => dawnFlagsFromEnv({ JUICE_DAWN_FLAGS: 'enable-dawn-feature=disable_robustness' }), /enable-dawn-feature=disable_robustness/);
});

test('JUICE_HOST_WAIT: yield or spin, else the device default; anything else is refused', () => {
  assert.is(hostWaitFromEnv('yield', {}), 'yield');
  assert.is(hostWaitFromEnv('spin', { JUICE_HOST_WAIT: '' }), 'spin');
  assert.is(hostWaitFromEnv('yield', { JUICE_HOST_WAIT: 'spin' }), 'spin');
  assert.is(hostWaitFromEnv('spin', { JUICE_HOST_WAIT: 'yield' }), 'yield');
  assert.throws(() => hostWaitFromEnv('spin', { JUICE_HOST_WAIT: 'sleep' }), /JUICE_HOST_WAIT=sleep: expected 'yield' or 'spin'/);
});

test('a toggle whose effect is missing stops the run', () => {
  const f16 = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];
  assert.throws(() => checkFlagsTookEffect({ dawnFlags: f16, features: new Set(['subgroups']) }), /shader-f16/);
  assert.not.throws(() => checkFlagsTookEffect({ dawnFlags: f16, features: new Set(['shader-f16']) }));
  const ts = ['disable-dawn-features=timestamp_quantization'];
  assert.throws(() => checkFlagsTookEffect({ dawnFlags: ts, features: new Set() }), /timestamp-query/);
  assert.not.throws(() => checkFlagsTookEffect({ dawnFlags: ts, features: new Set(['timestamp-query']) }));
});

test.run();
