// The copy task: a synthetic next-token batch for the engine's training tests.
import type { Random } from '../../engine/random.ts';

/**
 * A batch of L random symbols
 * (token ids below 8), a separator (8), the same L symbols again; inputs are the first 2L tokens, targets the next
 * token on the copied half only (-100 elsewhere).
 */
export function copyBatch(r: Random, batch: number, length: number): { ids: Int32Array; targets: Int32Array } {
  const T = 2 * length, symbols = 8;
  const ids = new Int32Array(batch * T), targets = new Int32Array(batch * T).fill(-100);
  for (let b = 0; b < batch; b++) {
    const seq = Array.from({ length }, () => r.int(symbols));
    const full = [...seq, symbols, ...seq];
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = full[t];
      if (t >= length) targets[b * T + t] = full[t + 1];
    }
  }
  return { ids, targets };
}
