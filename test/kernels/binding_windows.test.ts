// Tensors larger than one storage binding: the same workload (test/support/binding_windows.ts) in one binding per
// tensor here, and in a child process whose binding size is cut to 64 KiB, where its [600, 64] tables are bound in
// three windows. The gather is bit-identical; the chunked log-softmax, the head's chunked sum into dhidden (which
// then feeds the embedding's gradient) and the grad norm's partial sums change the order of additions (1e-6).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { bindingWindowWorkload, WINDOW_BINDING_BYTES, type WindowedResults } from '../support/binding_windows.ts';
import { assertClose } from '../support/util.ts';

const CHILD = fileURLToPath(new URL('../support/binding_windows.ts', import.meta.url));
const TSX = fileURLToPath(new URL('../../bin/tsx.mjs', import.meta.url));

test('ops on tensors larger than one binding match their one-binding results', async () => {
  const whole = await bindingWindowWorkload();
  const r = spawnSync(process.execPath, ['--import', TSX, CHILD], { encoding: 'utf8', env: { ...process.env, JUICE_MAX_BINDING_BYTES: String(WINDOW_BINDING_BYTES) }, timeout: 120_000, maxBuffer: 2 ** 26 });
  assert.is(r.status, 0, r.stderr);
  const windowed = JSON.parse(r.stdout) as WindowedResults;
  assert.is(whole.chunks, 1);
  assert.is(windowed.chunks, 3, 'the head runs in three chunks of 256 rows');
  assert.equal(windowed.embedding, whole.embedding, 'embedding');
  for (const name of ['logp', 'tableGrad', 'headGrad', 'gradNormSquared', 'table', 'head', 'logits']) assertClose(windowed[name] as number[], whole[name] as number[], 1e-6, name);
  assert.is((whole.embedding as number[]).slice(2 * 64, 3 * 64).every((v) => v === 0), true, 'an id outside the table gives a zero row');
  assert.is(whole.shardedBitsEqual, 'true', 'two AdamW shards update as one optimizer, one binding a tensor');
  assert.is(windowed.shardedBitsEqual, 'true', 'two AdamW shards update as one optimizer, in windows');
  assert.is(whole.tooLarge, '', 'one binding holds the table here');
  assert.match(windowed.tooLarge, /op 'add': binding .* of 153600 bytes, more than one binding holds \(maxStorageBufferBindingSize 65536\)/);
});

test.run();
