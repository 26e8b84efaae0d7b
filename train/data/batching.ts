// Batches of encoded examples: a seeded shuffle per epoch, optional length grouping, right padding,
// and a cursor that a checkpoint saves so that a resumed run sees exactly the batches it would have.
//
// An epoch's batch order is a pure function of the PRNG state at the epoch's start, so the cursor is
// that state, the epoch and the position in it; restoring recomputes the epoch's order and skips to
// the position.
import { Rng, type RngState } from './rng.ts';
import type { EncodedSequence } from './encode.ts';

export interface SamplerOptions {
  batchSize: number;
  /** Default 0. */
  seed?: number;
  /** Shuffle each epoch; default true. Without it batches follow the dataset's order. */
  shuffle?: boolean;
  /** Drop the last batch of an epoch when it is smaller than batchSize; default false. */
  dropLast?: boolean;
  /**
   * Group by length, like transformers' group_by_length: the epoch's shuffled order is cut into
   * mega-batches of megaBatchFactor * batchSize examples, each sorted by length (longest first) and cut
   * into batches, and the batches are then shuffled. Needs `lengths`.
   */
  groupByLength?: boolean;
  /** Default 50, as transformers' get_length_grouped_indices. */
  megaBatchFactor?: number;
  /** The length of each example, for groupByLength. */
  lengths?: ArrayLike<number>;
}

/** Where a sampler stands; plain JSON. `datasetSize` and `batchSize` guard against restoring into another dataset. */
export interface Cursor {
  epoch: number;
  /** The number of batches of this epoch already given out. */
  position: number;
  /** The PRNG state at the start of this epoch. */
  rngState: RngState;
  datasetSize: number;
  batchSize: number;
}

export interface SampledBatch {
  indices: Int32Array;
  epoch: number;
  /** This batch's index in its epoch. */
  position: number;
}

export class BatchSampler {
  readonly batchSize: number;
  readonly batchesPerEpoch: number;
  private readonly shuffle: boolean;
  private readonly groupByLength: boolean;
  private readonly megaBatchFactor: number;
  private readonly lengths: ArrayLike<number> | null;
  private epoch = 0;
  private position = 0;
  private epochState: RngState;
  private order: Int32Array[] | null = null;
  private nextEpochState: RngState | null = null;

  constructor(readonly datasetSize: number, options: SamplerOptions) {
    const { batchSize, seed = 0, shuffle = true, dropLast = false, groupByLength = false, megaBatchFactor = 50 } = options;
    if (!Number.isInteger(datasetSize) || datasetSize < 1) throw new Error(`BatchSampler: the dataset size must be a positive integer, got ${datasetSize}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`BatchSampler: batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(megaBatchFactor) || megaBatchFactor < 1) throw new Error(`BatchSampler: megaBatchFactor must be a positive integer, got ${megaBatchFactor}`);
    if (dropLast && datasetSize < batchSize) throw new Error(`BatchSampler: with dropLast, ${datasetSize} examples make no batch of ${batchSize}`);
    if (groupByLength && options.lengths === undefined) throw new Error('BatchSampler: groupByLength needs lengths');
    if (options.lengths !== undefined && options.lengths.length !== datasetSize) throw new Error(`BatchSampler: ${options.lengths.length} lengths for ${datasetSize} examples`);
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.groupByLength = groupByLength;
    this.megaBatchFactor = megaBatchFactor;
    this.lengths = options.lengths ?? null;
    this.batchesPerEpoch = dropLast ? Math.floor(datasetSize / batchSize) : Math.ceil(datasetSize / batchSize);
    this.epochState = Rng.fromSeed(seed).state();
  }

  /** The batches of one epoch, drawn from `rng`. */
  private plan(rng: Rng): Int32Array[] {
    const n = this.datasetSize;
    const order = Int32Array.from({ length: n }, (_, i) => i);
    if (this.shuffle) rng.shuffle(order);
    if (this.groupByLength) {
      const lengths = this.lengths as ArrayLike<number>;
      const mega = this.megaBatchFactor * this.batchSize;
      for (let start = 0; start < n; start += mega) {
        // Longest first; ties keep the shuffled order (Array.prototype.sort is stable).
        const chunk = Array.from(order.subarray(start, Math.min(start + mega, n))).sort((a, b) => lengths[b] - lengths[a]);
        order.set(chunk, start);
      }
    }
    const batches: Int32Array[] = [];
    for (let b = 0; b < this.batchesPerEpoch; b++) batches.push(order.slice(b * this.batchSize, Math.min((b + 1) * this.batchSize, n)));
    if (this.groupByLength && this.shuffle) rng.shuffle(batches);
    return batches;
  }

  private currentOrder(): Int32Array[] {
    if (this.order === null) {
      const rng = Rng.fromState(this.epochState);
      this.order = this.plan(rng);
      this.nextEpochState = rng.state();
    }
    return this.order;
  }

  /** The next batch; epochs follow one another without end. */
  next(): SampledBatch {
    let order = this.currentOrder();
    if (this.position >= order.length) {
      this.epochState = this.nextEpochState as RngState;
      this.epoch++;
      this.position = 0;
      this.order = null;
      order = this.currentOrder();
    }
    const position = this.position++;
    return { indices: order[position], epoch: this.epoch, position };
  }

  cursor(): Cursor {
    return { epoch: this.epoch, position: this.position, rngState: [...this.epochState], datasetSize: this.datasetSize, batchSize: this.batchSize };
  }

  restore(cursor: Cursor): void {
    if (cursor.datasetSize !== this.datasetSize || cursor.batchSize !== this.batchSize) {
      throw new Error(`BatchSampler.restore: the cursor is for ${cursor.datasetSize} examples in batches of ${cursor.batchSize}, this sampler has ${this.datasetSize} in batches of ${this.batchSize}`);
    }
    if (!Number.isInteger(cursor.position) || cursor.position < 0 || cursor.position > this.batchesPerEpoch) {
      throw new Error(`BatchSampler.restore: position ${cursor.position} is outside [0, ${this.batchesPerEpoch}]`);
    }
    if (!Number.isInteger(cursor.epoch) || cursor.epoch < 0) throw new Error(`BatchSampler.restore: epoch ${cursor.epoch} must be a non-negative integer`);
    this.epochState = Rng.fromState(cursor.rngState).state();
    this.epoch = cursor.epoch;
    this.position = cursor.position;
    this.order = null;
  }
}

/** Right-padded sequences, row-major [B, T]. */
export interface PaddedBatch {
  ids: Int32Array;
  responseMask: Uint8Array;
  /** The unpadded length of each row (attention covers positions [0, lengths[b])). */
  lengths: Int32Array;
  B: number;
  T: number;
}

export interface Batch extends PaddedBatch {
  /** The examples' indices in the dataset. */
  indices: Int32Array;
  epoch: number;
  position: number;
}

/** Pads on the right with padId (mask 0) to T = the longest row, rounded up to a multiple of padToMultipleOf. */
export function collate(rows: readonly EncodedSequence[], padId: number, padToMultipleOf = 1): PaddedBatch {
  if (rows.length === 0) throw new Error('collate: no rows');
  if (!Number.isInteger(padToMultipleOf) || padToMultipleOf < 1) throw new Error(`collate: padToMultipleOf must be a positive integer, got ${padToMultipleOf}`);
  const B = rows.length;
  const longest = Math.max(...rows.map((r) => r.ids.length));
  const T = Math.ceil(longest / padToMultipleOf) * padToMultipleOf;
  const ids = new Int32Array(B * T).fill(padId);
  const responseMask = new Uint8Array(B * T);
  const lengths = new Int32Array(B);
  rows.forEach((r, b) => {
    ids.set(r.ids, b * T);
    responseMask.set(r.responseMask, b * T);
    lengths[b] = r.ids.length;
  });
  return { ids, responseMask, lengths, B, T };
}

export interface LoaderOptions extends Omit<SamplerOptions, 'lengths'> {
  padId: number;
  padToMultipleOf?: number;
}

/** Training batches of encoded examples: a BatchSampler (lengths taken from the examples) and collate. */
export class DataLoader<E extends EncodedSequence = EncodedSequence> {
  readonly sampler: BatchSampler;

  constructor(readonly examples: readonly E[], private readonly options: LoaderOptions) {
    if (!Number.isInteger(options.padId)) throw new Error(`DataLoader: padId must be an integer, got ${options.padId}`);
    this.sampler = new BatchSampler(examples.length, { ...options, lengths: examples.map((e) => e.ids.length) });
  }

  get batchesPerEpoch(): number {
    return this.sampler.batchesPerEpoch;
  }

  next(): Batch {
    const { indices, epoch, position } = this.sampler.next();
    const rows = Array.from(indices, (i) => this.examples[i]);
    return { ...collate(rows, this.options.padId, this.options.padToMultipleOf), indices, epoch, position };
  }

  cursor(): Cursor {
    return this.sampler.cursor();
  }

  restore(cursor: Cursor): void {
    this.sampler.restore(cursor);
  }
}
