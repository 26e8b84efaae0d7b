// What `juice irft` and `juice rft` share besides the loop: reading the demonstrations as (prompt, demonstration)
// token ids, the resume folder, the generation settings (EOS, stop strings, sampling) and turning a generated row
// into a response that ends like a demonstration (EOS appended after a stop string, which is cut off).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ledger } from '../engine/ledger.ts';
import type { CausalLM, GeneratedRow, GenerationPass } from '../models/causal_lm.ts';
import { rollout } from '../models/rollout.ts';
import type { Tokenizer } from '../models/tokenizer.ts';
import type { RunAudit, Workloads } from './audit.ts';
import { ChatTemplate, DataLoader, encodeExample, readExamples, type EncodedExample } from './data/index.ts';
import { RunConfigError, type TrainingOptions } from './run_config.ts';
import { SftObjective } from './sft.ts';


/** HH's turn markers: a generated assistant turn ends where the next turn would begin. */
export const HH_STOP_STRINGS = ['\n\nHuman:', '\n\nAssistant:'];

/** A prompt and its demonstration (token ids; the demonstration ends with EOS unless it was cut). */
export interface Demonstration { prompt: number[]; demo: number[] }

/** The options IRFT and RFT add to the training options: their generation (bin/commands/irft.ts generationOptions) and the audit's peak. */
export interface ReinforcementOptions extends TrainingOptions {
  'max-new-tokens': number;
  temperature: number;
  'top-p': number;
  'top-k': number;
  stop: string[];
  'no-stop': boolean;
  'generation-batch': number;
}

export interface GenerationSettings {
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  stopStrings: string[];
  /** Prompts generated together. */
  batchSize: number;
}

/** The records of --data (--limit), encoded as SFT encodes them, split into prompt and demonstration. */
export async function readDemonstrations(o: TrainingOptions, tokenizer: Tokenizer, eos: number, log: (l: string) => void): Promise<{ examples: Demonstration[]; encoded: EncodedExample[] }> {
  const template = existsSync(join(o.model, 'tokenizer_config.json')) ? ChatTemplate.fromTokenizerConfig(o.model) : null;
  const read = await readExamples(o.data, { limit: o.limit, skipBadLines: o['skip-bad-lines'] });
  if (read.examples.length === 0) throw new RunConfigError(`${o.data}: no records`);
  const encoded = read.examples.map((e) => encodeExample(tokenizer, e, {
    maxPromptLength: o['max-prompt-length'], maxLength: o['max-length'], maxResponseLength: o['max-response-length'], eosTokenId: eos, template,
  }));
  const examples = encoded.map((e) => ({ prompt: Array.from(e.ids.subarray(0, e.promptLength)), demo: Array.from(e.ids.subarray(e.promptLength, e.promptLength + e.responseLength)) }))
    .filter((e) => e.prompt.length > 0 && e.demo.length > 0);
  const tokens = examples.reduce((n, e) => n + e.prompt.length + e.demo.length, 0);
  log(`${o.data}: ${examples.length} ${read.format} records, ${tokens} tokens (mean prompt ${(examples.reduce((n, e) => n + e.prompt.length, 0) / examples.length).toFixed(1)}, demonstration ${(examples.reduce((n, e) => n + e.demo.length, 0) / examples.length).toFixed(1)})`);
  return { examples, encoded };
}

/**
 * The held-out evaluation of --eval-data (--eval-limit) on the policy: the SFT objective's eval loss and pair metrics
 * (train/eval_pairs.ts), each of its forwards recorded as the audit's phase 'evaluation'; null without --eval-data.
 */
export async function heldOutEvaluator(o: TrainingOptions, policy: CausalLM, tokenizer: Tokenizer, eos: number, padId: number, audit: RunAudit, log: (l: string) => void): Promise<SftObjective | null> {
  if (o['eval-data'] === undefined) return null;
  const evalSet = (await readDemonstrations({ ...o, data: o['eval-data'], limit: o['eval-limit'] }, tokenizer, eos, log)).encoded;
  return new SftObjective(policy, new DataLoader(evalSet, { batchSize: o.batch, seed: o.seed, padId }), 1, evalSet, o.batch, padId, audit);
}


/**
 * A generated row as a response: EOS-terminated rows as they are; a row that completed a stop string cut to the
 * longest prefix whose text ends before the stop string, then EOS appended (as a demonstration ends); a row
 * that ran to the length as it is (no EOS: cut, like a demonstration cut at --max-length).
 */
export function responseOf(row: GeneratedRow, tokenizer: Pick<Tokenizer, 'decode'>, stopStrings: readonly string[], eos: number): number[] {
  if (row.finish !== 'stop') return [...row.tokens];
  const decode = (t: number[]) => tokenizer.decode(t, { skipSpecialTokens: true });
  const text = decode(row.tokens);
  const at = Math.min(...stopStrings.map((s) => text.indexOf(s)).filter((i) => i >= 0));
  let k = row.tokens.length;
  while (k > 0 && decode(row.tokens.slice(0, k)).length > at) k--;
  return [...row.tokens.slice(0, k), eos];
}

export interface GeneratedResponses { responses: number[][]; rows: GeneratedRow[]; generatedTokens: number; seconds: number; tokensPerSecond: number; passes: GenerationPass[] }

/**
 * One response per prompt with the policy (batched, KV cache, the GPU sampler keyed by the prompt's index so
 * that a prompt's tokens do not depend on its batch), charged to the ledger phase `generation` and recorded in
 * the workloads.
 */
export async function generateResponses(policy: CausalLM, prompts: readonly number[][], g: GenerationSettings, seed: number, eos: number, tokenizer: Tokenizer, workloads: Workloads): Promise<GeneratedResponses> {
  const { rows, passes, timing } = await ledger.inPhaseAsync('generation', () => rollout(policy, prompts, {
    maxNewTokens: g.maxNewTokens, eosTokenIds: [eos], stopStrings: g.stopStrings, decoder: g.stopStrings.length > 0 ? tokenizer : undefined,
    temperature: g.temperature, topP: g.topP, topK: g.topK, seed, batchSize: g.batchSize,
  }));
  workloads.generation(passes, policy.lora !== undefined, timing.generatedTokens);
  const responses = rows.map((r) => responseOf(r, tokenizer, g.stopStrings, eos));
  return { responses, rows, generatedTokens: timing.generatedTokens, seconds: timing.seconds, tokensPerSecond: timing.tokensPerSecond, passes };
}


/** An integer seed derived from the run's seed and a purpose (a stage, an iteration). */
export function derivedSeed(seed: number, ...parts: number[]): number {
  let h = seed >>> 0;
  for (const p of parts) h = (Math.imul(h ^ (p >>> 0), 0x9e3779b1) + 0x7f4a7c15) >>> 0;
  return h;
}

/** Fisher-Yates shuffle of 0..n-1 from a seed. */
export function shuffled(n: number, random: { int(n: number): number }): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) { const j = random.int(i + 1); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}
