// No GPU: a few hundred seeded mutations of every file a model or dataset folder is read from (test/support/fuzz.ts)
// end in a typed error naming the file, or in a load identical to the original or independently consistent; never
// a crash, a generic exception or silently accepted inconsistent data. The long run: `npm run fuzz -- --cases 10000`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { formatReport, runFuzz } from '../support/fuzz.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));

for (const target of ['safetensors', 'config.json', 'index.json', 'jsonl', 'adapter_config.json']) {
  test(`${target}: 60 seeded mutations end in typed errors or consistent loads`, async () => {
    const report = await runFuzz({ cases: 60, seed: 20240601, fixtures: FIXTURES, hugeLineBytes: 1 << 16, only: [target] });
    assert.equal(report.failures, [], formatReport(report, true));
    assert.ok(Object.keys(report.counts[target]!).some((o) => o.startsWith('typed:')), `no mutation was refused:\n${formatReport(report, true)}`);
  });
}

test.run();
