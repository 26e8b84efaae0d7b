// `juice verify DIR`: recomputes a reference folder on the GPU and prints one JSON report; exit 0 only if it passes.
import { verifyFolder } from '../../train/verify.ts';
import { defineCommand, path } from '../options.ts';

export const verify = defineCommand({
  name: 'verify',
  summary: 'recompute a reference folder (laid out like test/fixtures/hf/<kind>) on the GPU and print relative errors as JSON; exit 0 only if every present quantity passes',
  argument: path({ is: 'dir', required: true, help: 'the reference folder: expected.safetensors (the kind is told by its tensors), expected.json, the model files' }),
  options: {},
  async run(_, dir) {
    const report = await verifyFolder(dir);
    console.log(JSON.stringify(report, null, 2));
    return report.pass ? 0 : 1;
  },
});
