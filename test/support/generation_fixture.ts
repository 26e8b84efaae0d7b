// The gpt_neox fixture (test/fixtures/hf/gpt_neox) for a suite of generation tests, loaded before the suite and
// disposed after it, and the ragged prompts those suites generate after (lengths 6, 3, 9, 1, 5).
import type { Test } from 'uvu';
import { loadCausalLM, type CausalLM } from '../../models/causal_lm.ts';
import { fixture } from './paths.ts';
import { initGpu, randInt } from './util.ts';

export const FIXTURE_PROMPTS = [randInt(6, 128, 1), randInt(3, 128, 2), randInt(9, 128, 3), randInt(1, 128, 4), randInt(5, 128, 5)];

/** The suite's model: `fx.model` inside its tests. */
export function gptNeoxFixture(suite: Test): { readonly model: CausalLM } {
  let model: CausalLM | undefined;
  suite.before(async () => {
    await initGpu();
    model = loadCausalLM(fixture('hf/gpt_neox'));
  });
  suite.after(() => model?.dispose());
  return { get model() { if (!model) throw new Error('the gpt_neox fixture is loaded before the suite runs'); return model; } };
}
