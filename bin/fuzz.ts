// The long fuzz run: `npm run fuzz -- --cases 10000 [--seed N] [--only safetensors,config.json] [--by-mutation]` prints the count of
// each outcome per target (test/support/fuzz.ts) and exits 1 when any case failed.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatReport, runFuzz } from '../test/support/fuzz.ts';

const { values } = parseArgs({ options: { cases: { type: 'string', default: '1000' }, seed: { type: 'string', default: '1' }, only: { type: 'string' }, 'by-mutation': { type: 'boolean', default: false } } });
const cases = Number(values.cases), seed = Number(values.seed);
if (!Number.isSafeInteger(cases) || cases < 1 || !Number.isSafeInteger(seed)) {
  console.error(`fuzz: --cases must be a positive integer and --seed an integer (got ${values.cases}, ${values.seed})`);
  process.exit(2);
}
const start = performance.now();
const report = await runFuzz({
  cases, seed, fixtures: fileURLToPath(new URL('../test/fixtures/hf/', import.meta.url)),
  ...(values.only ? { only: values.only.split(',') } : {}),
});
console.log(formatReport(report, values['by-mutation']));
console.log(`seed ${seed}, ${((performance.now() - start) / 1000).toFixed(1)} s`);
process.exit(report.failures.length > 0 ? 1 : 0);
