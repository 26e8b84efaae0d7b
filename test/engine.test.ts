import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { initGpu } from '../engine/gpu.ts';
import { Tensor, tidy } from '../engine/tensor.ts';
import { add, mul, sumLastDim } from '../engine/ops/elementwise.ts';
import { backward } from '../engine/autodiff.ts';
import { pool } from '../engine/pool.ts';

test('add/mul broadcast and backward', async () => {
  await initGpu();
  const base = pool.liveBytes;
  const a = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]); a.requiresGrad = true;
  const b = Tensor.fromArray([10, 20, 30], [3]); b.requiresGrad = true;
  const loss = tidy(() => sumLastDim(sumLastDim(mul(add(a, b), b))));
  assert.equal(await loss.item(), (11*10+22*20+33*30)+(14*10+25*20+36*30));
  backward(loss);
  loss.dispose();
  // d/da = b ; d/db = sum over rows of (a + 2b)
  assert.equal([...(await a.grad!.toArray())], [10, 20, 30, 10, 20, 30]);
  assert.equal([...(await b.grad!.toArray())], [1+4+40, 2+5+80, 3+6+120]);
  a.grad!.dispose(); b.grad!.dispose(); a.dispose(); b.dispose();
  assert.is(pool.liveBytes, base);
});

test.run();
