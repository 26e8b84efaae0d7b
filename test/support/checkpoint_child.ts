// Child process for the checkpoint crash tests (test/checkpoint.test.ts); the parent kills it with SIGKILL.
//   checkpoint_child.ts <outDir> block <step> <phase>   write checkpoint-<step>, then block forever at the
//                                                        first hook call of <phase>, after printing "at <phase>"
//   checkpoint_child.ts <outDir> loop <floats>           write checkpoint-1, 2, 3, ... with <floats> values each,
//                                                        printing "saved <step>" after each, until killed
import { writeCheckpoint, type CheckpointFile, type CheckpointPhase } from '../../train/checkpoint.ts';

const [outDir, mode, a, b] = process.argv.slice(2) as [string, string, string, string];

/** checkpoint contents for a step: every tensor value and the JSON carry the step, so a loader can tell them apart. */
function contents(step: number, floats: number): CheckpointFile[] {
  return [
    { name: 'model.safetensors', kind: 'safetensors', tensors: { w: { shape: [floats], data: new Float32Array(floats).fill(step) } } },
    { name: 'optimizer.safetensors', kind: 'safetensors', tensors: { m: { shape: [floats], data: new Float32Array(floats).fill(-step) } } },
    { name: 'trainer_state.json', kind: 'json', value: { step } },
  ];
}

const sleepForever = () => { for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000); };

if (mode === 'block') {
  const step = Number(a);
  const phase = b as CheckpointPhase;
  writeCheckpoint(outDir, step, contents(step, 1024), {
    hook: (p) => {
      if (p !== phase) return;
      process.stdout.write(`at ${p}\n`);
      sleepForever();
    },
  });
  process.stdout.write('finished\n');
} else if (mode === 'loop') {
  const floats = Number(a);
  for (let step = 1; ; step++) {
    writeCheckpoint(outDir, step, contents(step, floats));
    process.stdout.write(`saved ${step}\n`);
  }
}
