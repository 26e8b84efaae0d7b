// The embedded task of the reward-learning demo: digit-string operations answered by a KNOWN expert policy,
// with a weaker policy's structured mistakes as the rejected responses, so that held-out metrics are exact.
//
// A prompt is an operation symbol and 7-12 digits (TaskOptions choose the range and the operations), then "=":
// "S3130592=". The response is as many digits:
//   S  sort:       ascending with probability 3/4, descending with 1/4 (two correct answers; one when they coincide)
//   R  reverse:    the digits in reverse order
//   I  increment:  every digit plus one, modulo 10
//   P  partition:  stable partition by parity, evens first or odds first, each with probability 1/2
// The expert samples one correct answer; its distribution is enumerated exactly (expertDistribution), so
// log pi_expert(response) is exact. The weaker policy picks a correct answer the same way, then makes one
// typical mistake (an adjacent swap, one digit off by one, or the operation's own: a sort missing its last
// insertion, a reverse off by one position, an increment skipped or doubled at one digit or not wrapped at 9,
// a digit put in the wrong parity group, the input copied); its distribution is enumerated too
// (weakerDistribution), with every correct answer removed and the rest renormalised, so a rejected response
// is never correct and log pi_weaker is exact. The two supports are disjoint: under either policy the gap
// log pi(demo) - log pi(rejected) is infinite; the finite reference numbers are the expert's log-likelihood of
// its demonstrations (the best an SFT model can reach) and the weaker policy's of its rejected responses.
//
// Tokens are characters: ids 0-3 are <pad>, <bos>, <eos>, <unk>, then the digits, the four operations and "=".
// The tokenizer-like `taskTokenizer` plugs into train/data/encode.ts (BOS in front with special tokens,
// unknown characters to <unk>); encodeTaskExample gives the same ids and mask directly.
import { Rng } from '../data/rng.ts';
import type { EncodedSequence } from '../data/encode.ts';
import type { Example } from '../data/types.ts';

export const PAD_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;
export const UNK_ID = 3;

export const OPS = ['S', 'R', 'I', 'P'] as const;
export type Op = (typeof OPS)[number];
export const SEPARATOR = '=';

/** Token strings by id. */
export const VOCAB: readonly string[] = ['<pad>', '<bos>', '<eos>', '<unk>', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ...OPS, SEPARATOR];
export const VOCAB_SIZE = VOCAB.length;
const SPECIAL_IDS = new Set([PAD_ID, BOS_ID, EOS_ID, UNK_ID]);
const ID_OF = new Map(VOCAB.map((t, i) => [t, i] as const).filter(([, i]) => !SPECIAL_IDS.has(i)));

export const MIN_DIGITS = 7;
export const MAX_DIGITS = 12;
/** BOS, the operation, the digits and "=". */
export const MAX_PROMPT_TOKENS = MAX_DIGITS + 3;
/** The digits and EOS. */
export const MAX_RESPONSE_TOKENS = MAX_DIGITS + 1;

/** The probability that the expert (and the weaker policy) sorts ascending. */
export const SORT_ASCENDING_P = 0.75;
/** The probability that the expert (and the weaker policy) puts the evens first. */
export const EVENS_FIRST_P = 0.5;

// ---- tokens ----

/** Characters to ids, no special tokens; an unknown character becomes <unk>. */
export function encode(text: string): number[] {
  return Array.from(text, (ch) => ID_OF.get(ch) ?? UNK_ID);
}

/** Ids to text; special tokens written as their names unless skipped. Throws on an id outside the vocabulary. */
export function decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
  let s = '';
  for (const id of Array.from(ids)) {
    if (!Number.isInteger(id) || id < 0 || id >= VOCAB_SIZE) throw new Error(`expert_task.decode: token id ${id} outside the vocabulary [0, ${VOCAB_SIZE})`);
    if (options.skipSpecialTokens && SPECIAL_IDS.has(id)) continue;
    s += VOCAB[id];
  }
  return s;
}

/** A generated response's text: the tokens before the first EOS, padding dropped, other specials kept (they score as wrong). */
export function decodeResponse(ids: ArrayLike<number>): string {
  const a = Array.from(ids);
  const end = a.indexOf(EOS_ID);
  return decode((end < 0 ? a : a.slice(0, end)).filter((id) => id !== PAD_ID));
}

/** The shape train/data/encode.ts takes (TokenizerLike) and what generation's decoder needs. */
export const taskTokenizer = {
  bosTokenId: BOS_ID as number | null,
  eosTokenId: EOS_ID as number | null,
  padTokenId: PAD_ID,
  vocabSize: VOCAB_SIZE,
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = encode(text);
    return (options.addSpecialTokens ?? true) ? [BOS_ID, ...ids] : ids;
  },
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return decode(ids, options);
  },
};

// ---- prompts and the two policies ----

export interface TaskPrompt { op: Op; digits: number[] }

export function promptText(p: TaskPrompt): string {
  return `${p.op}${p.digits.join('')}${SEPARATOR}`;
}

/** "S3130=" -> { op: 'S', digits: [3, 1, 3, 0] }; throws on anything else. */
export function parsePrompt(prompt: string): TaskPrompt {
  const m = /^([SRIP])([0-9]+)=$/.exec(prompt);
  if (!m) throw new Error(`expert_task: "${prompt}" is not a prompt (an operation of ${OPS.join('')}, digits, "=")`);
  return { op: m[1] as Op, digits: Array.from(m[2], Number) };
}

/** A distribution over response texts (EOS implied): insertion order is the sampling order. */
export type Distribution = Map<string, number>;

function add(d: Distribution, text: string, p: number): void {
  if (p > 0) d.set(text, (d.get(text) ?? 0) + p);
}

const digitsText = (a: readonly number[]) => a.join('');
const ascending = (a: readonly number[]) => [...a].sort((x, y) => x - y);
const isEven = (x: number) => x % 2 === 0;

/** The correct answers with the expert's probabilities. */
export function expertDistribution(prompt: string | TaskPrompt): Distribution {
  const { op, digits } = typeof prompt === 'string' ? parsePrompt(prompt) : prompt;
  const d: Distribution = new Map();
  switch (op) {
    case 'S': {
      const up = ascending(digits);
      add(d, digitsText(up), SORT_ASCENDING_P);
      add(d, digitsText([...up].reverse()), 1 - SORT_ASCENDING_P);
      break;
    }
    case 'R': add(d, digitsText([...digits].reverse()), 1); break;
    case 'I': add(d, digitsText(digits.map((x) => (x + 1) % 10)), 1); break;
    case 'P': {
      const evens = digits.filter(isEven), odds = digits.filter((x) => !isEven(x));
      add(d, digitsText([...evens, ...odds]), EVENS_FIRST_P);
      add(d, digitsText([...odds, ...evens]), 1 - EVENS_FIRST_P);
      break;
    }
  }
  return d;
}

/** Every string one mistake away from `target`, equally weighted within each kind; the kinds equally weighted. */
function mistakes(op: Op, digits: readonly number[], target: readonly number[], evensFirst: boolean): string[][] {
  const n = target.length;
  const kinds: string[][] = [];
  // An adjacent pair swapped (only pairs that differ change anything).
  const swaps: string[] = [];
  for (let i = 0; i + 1 < n; i++) {
    if (target[i] === target[i + 1]) continue;
    const t = [...target];
    [t[i], t[i + 1]] = [t[i + 1], t[i]];
    swaps.push(digitsText(t));
  }
  kinds.push(swaps);
  // One digit off by one (up, or down, within 0-9).
  const offByOne: string[] = [];
  for (let i = 0; i < n; i++) {
    for (const delta of [-1, 1]) {
      const v = target[i] + delta;
      if (v < 0 || v > 9) continue;
      const t = [...target];
      t[i] = v;
      offByOne.push(digitsText(t));
    }
  }
  kinds.push(offByOne);
  switch (op) {
    case 'S': {
      // Insertion sort one step short: the first n-1 digits sorted, the last left at the end.
      const head = ascending(digits.slice(0, -1));
      const up = target[0] <= target[n - 1];
      kinds.push([digitsText([...(up ? head : head.reverse()), digits[n - 1]])]);
      break;
    }
    case 'R':
      // Reversal off by one position: the first digit left at the end, or the last at the front.
      kinds.push([digitsText([...digits.slice(0, -1).reverse(), digits[n - 1]]), digitsText([digits[0], ...digits.slice(1).reverse()])]);
      kinds.push([digitsText(digits)]); // the input copied
      break;
    case 'I': {
      const skipped: string[] = [], doubled: string[] = [];
      for (let i = 0; i < n; i++) {
        const t = [...target]; t[i] = digits[i]; skipped.push(digitsText(t));
        const u = [...target]; u[i] = (digits[i] + 2) % 10; doubled.push(digitsText(u));
      }
      kinds.push(skipped, doubled);
      // 9 + 1 not wrapped: the nines stay nines.
      if (digits.includes(9)) kinds.push([digitsText(digits.map((x) => (x === 9 ? 9 : x + 1)))]);
      break;
    }
    case 'P': {
      // One digit put in the other group: moved from its group to the far end of the other.
      const first = digits.filter((x) => isEven(x) === evensFirst), second = digits.filter((x) => isEven(x) !== evensFirst);
      const misplaced: string[] = [];
      for (let i = 0; i < first.length; i++) misplaced.push(digitsText([...first.slice(0, i), ...first.slice(i + 1), ...second, first[i]]));
      for (let i = 0; i < second.length; i++) misplaced.push(digitsText([second[i], ...first, ...second.slice(0, i), ...second.slice(i + 1)]));
      kinds.push(misplaced);
      kinds.push([digitsText(digits)]);
      break;
    }
  }
  return kinds.filter((k) => k.length > 0);
}

/**
 * The weaker policy: a correct answer drawn as the expert draws it, then one mistake (a kind uniformly, then
 * uniformly within the kind), correct answers removed and the rest renormalised. Never empty: an off-by-one
 * digit exists for every target and changes the multiset of digits (S, P) or the only correct answer (R, I).
 */
export function weakerDistribution(prompt: string | TaskPrompt): Distribution {
  const p = typeof prompt === 'string' ? parsePrompt(prompt) : prompt;
  const correct = expertDistribution(p);
  const d: Distribution = new Map();
  const targets: { target: number[]; p: number; evensFirst: boolean }[] = [];
  if (p.op === 'S') {
    const up = ascending(p.digits);
    targets.push({ target: up, p: SORT_ASCENDING_P, evensFirst: true }, { target: [...up].reverse(), p: 1 - SORT_ASCENDING_P, evensFirst: true });
  } else if (p.op === 'P') {
    const evens = p.digits.filter(isEven), odds = p.digits.filter((x) => !isEven(x));
    targets.push({ target: [...evens, ...odds], p: EVENS_FIRST_P, evensFirst: true }, { target: [...odds, ...evens], p: 1 - EVENS_FIRST_P, evensFirst: false });
  } else {
    targets.push({ target: Array.from(correct.keys())[0].split('').map(Number), p: 1, evensFirst: true });
  }
  for (const { target, p: pt, evensFirst } of targets) {
    const kinds = mistakes(p.op, p.digits, target, evensFirst);
    for (const kind of kinds) for (const text of kind) add(d, text, pt / kinds.length / kind.length);
  }
  for (const text of correct.keys()) d.delete(text);
  let total = 0;
  for (const v of d.values()) total += v;
  if (total === 0) throw new Error(`expert_task: the weaker policy has no mistake for "${promptText(p)}"`);
  for (const [k, v] of d) d.set(k, v / total);
  return d;
}

/** Natural log of the probability of `response` (digits, EOS implied) under a distribution; -Infinity off its support. */
function logProbIn(d: Distribution, response: string): number {
  const p = d.get(response);
  return p === undefined ? -Infinity : Math.log(p);
}

export function expertLogProb(prompt: string, response: string): number {
  return logProbIn(expertDistribution(prompt), response);
}

export function weakerLogProb(prompt: string, response: string): number {
  return logProbIn(weakerDistribution(prompt), response);
}

function sample(d: Distribution, rng: Rng): string {
  const u = rng.nextU32() / 0x100000000;
  let acc = 0, last = '';
  for (const [text, p] of d) {
    acc += p;
    last = text;
    if (u < acc) return text;
  }
  return last; // rounding: acc ended a hair under 1
}

// ---- scores ----

/** Whether the response (digits, no EOS) is one of the correct answers. */
export function exactMatch(prompt: string, response: string): boolean {
  return expertDistribution(prompt).has(response);
}

/**
 * The fraction of positions that agree with the nearest correct answer: max over correct answers t of
 * #{i : response[i] = t[i]} / max(|response|, |t|), in [0, 1]; 1 exactly for a correct answer. Characters that
 * are not digits (an operation symbol, "=", <unk>) are positions that disagree.
 */
export function score(prompt: string, response: string): number {
  const r = Array.from(response);
  let best = 0;
  for (const t of expertDistribution(prompt).keys()) {
    let same = 0;
    for (let i = 0; i < Math.min(r.length, t.length); i++) if (r[i] === t[i]) same++;
    best = Math.max(best, same / Math.max(r.length, t.length));
  }
  return best;
}

// ---- examples and splits ----

export interface TaskExample {
  prompt: string;
  /** A correct answer, drawn from the expert. */
  demonstration: string;
  /** A mistaken answer, drawn from the weaker policy. */
  rejected: string;
}

export interface TaskOptions {
  minDigits?: number;
  maxDigits?: number;
  /** The operations drawn from, uniformly (default all of OPS; the same stream as OPS when it is OPS). */
  ops?: readonly Op[];
}

/** One prompt and its two responses, drawn in that order from `rng`. */
export function sampleExample(rng: Rng, opts: TaskOptions = {}): TaskExample {
  const lo = opts.minDigits ?? MIN_DIGITS, hi = opts.maxDigits ?? MAX_DIGITS;
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 2 && hi >= lo)) throw new Error(`expert_task: digits per prompt must be integers with 2 <= min <= max, got ${lo}..${hi}`);
  const ops = opts.ops ?? OPS;
  if (ops.length === 0 || ops.some((x) => !OPS.includes(x))) throw new Error(`expert_task: ops must be a non-empty subset of ${OPS.join('')}, got "${ops.join('')}"`);
  const op = ops[rng.below(ops.length)];
  const n = lo + rng.below(hi - lo + 1);
  const digits = Array.from({ length: n }, () => rng.below(10));
  const p = { op, digits };
  return { prompt: promptText(p), demonstration: sample(expertDistribution(p), rng), rejected: sample(weakerDistribution(p), rng) };
}

export type Split = 'train' | 'eval';

/** One prompt in EVAL_MODULUS belongs to the eval split, decided by a hash of its text (FNV-1a), so the splits never share a prompt. */
export const EVAL_MODULUS = 8;

export function splitOf(prompt: string): Split {
  let h = 0x811c9dc5;
  for (let i = 0; i < prompt.length; i++) h = Math.imul(h ^ prompt.charCodeAt(i), 0x01000193) >>> 0;
  return h % EVAL_MODULUS === 0 ? 'eval' : 'train';
}

/**
 * `count` examples of one split, distinct prompts, from the stream Rng.fromSeed(2 seed) (train) or
 * Rng.fromSeed(2 seed + 1) (eval): draws that fall in the other split are skipped.
 */
export function taskExamples(split: Split, count: number, seed: number, opts: TaskOptions = {}): TaskExample[] {
  if (!Number.isInteger(count) || count < 0) throw new Error(`expert_task: count must be a non-negative integer, got ${count}`);
  const rng = Rng.fromSeed(2 * seed + (split === 'eval' ? 1 : 0));
  const seen = new Set<string>();
  const out: TaskExample[] = [];
  for (let draws = 0; out.length < count; draws++) {
    if (draws > 1000 * (count + 10)) throw new Error(`expert_task: cannot find ${count} distinct ${split} prompts with these options`);
    const ex = sampleExample(rng, opts);
    if (splitOf(ex.prompt) !== split || seen.has(ex.prompt)) continue;
    seen.add(ex.prompt);
    out.push(ex);
  }
  return out;
}

export function taskSplits(sizes: { train: number; eval: number }, seed: number, opts: TaskOptions = {}): { train: TaskExample[]; eval: TaskExample[] } {
  return { train: taskExamples('train', sizes.train, seed, opts), eval: taskExamples('eval', sizes.eval, seed, opts) };
}

/** The project's record: prompt text, demonstration as response, rejected; source names the split and the 1-based index. */
export function toExample(ex: TaskExample, index: number, split: Split = 'train'): Example {
  return { prompt: ex.prompt, response: ex.demonstration, rejected: ex.rejected, source: { file: `expert_task:${split}`, line: index + 1 } };
}

function encodeSequence(prompt: string, response: string): EncodedSequence {
  const p = taskTokenizer.encode(prompt, { addSpecialTokens: true });
  const r = [...encode(response), EOS_ID];
  const ids = Int32Array.from([...p, ...r]);
  const responseMask = new Uint8Array(ids.length);
  responseMask.fill(1, p.length);
  return { ids, responseMask, promptLength: p.length, responseLength: r.length, truncated: { prompt: false, response: false } };
}

/**
 * encode.ts's conventions without its options: ids = BOS, prompt, response, EOS; responseMask 1 on the
 * response and its EOS. Never truncated (at most MAX_PROMPT_TOKENS + MAX_RESPONSE_TOKENS with the defaults).
 */
export function encodeTaskExample(ex: TaskExample): EncodedSequence & { rejected: EncodedSequence } {
  return { ...encodeSequence(ex.prompt, ex.demonstration), rejected: encodeSequence(ex.prompt, ex.rejected) };
}

export interface ReferenceNumbers {
  /** Mean over examples of log pi_expert(demonstration): the best mean sequence log-likelihood an SFT model can reach. */
  expertLogProbDemo: number;
  /** Mean over examples of log pi_weaker(rejected). */
  weakerLogProbRejected: number;
  /** Mean score and exact-match rate of the rejected responses (the demonstrations score 1). */
  rejectedScore: number;
  rejectedExact: number;
}

export function referenceNumbers(examples: readonly TaskExample[]): ReferenceNumbers {
  let e = 0, w = 0, s = 0, x = 0;
  for (const ex of examples) {
    e += expertLogProb(ex.prompt, ex.demonstration);
    w += weakerLogProb(ex.prompt, ex.rejected);
    s += score(ex.prompt, ex.rejected);
    x += Number(exactMatch(ex.prompt, ex.rejected));
  }
  const n = Math.max(examples.length, 1);
  return { expertLogProbDemo: e / n, weakerLogProbRejected: w / n, rejectedScore: s / n, rejectedExact: x / n };
}
