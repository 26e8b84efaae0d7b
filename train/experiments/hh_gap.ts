// `juice experiment hh-gap`: the paper's qualitative result on real data (Li et al. 2024, "Getting More Juice Out
// of the SFT Data"): starting from the same base, does reward learning from the demonstrations (IRFT, RFT) widen
// the eval gap log p(chosen) - log p(rejected) of HH-RLHF pairs more than SFT does?
//
//   base     <data>/hh-byte-base (byte-level GPT-NeoX, 0.86M parameters, pretrained on the train part)
//   data     <data>/hh-rlhf/harmless-base-test.{train,eval}.jsonl.gz (2,007 / 300 pairs); prompts keep their last
//            96 tokens (BOS first), responses at most 48 tokens counting the EOS
//   runs     2 epochs at batch 16, AdamW (0.9, 0.95), no weight decay, 10 warmup steps then constant, clip 1.0:
//              sft        lr 3e-4 and 3e-5
//              irft       lr 3e-5, beta 0.1: T = 1 (SPIN) and T = 4 greedy, T = 1 sampled at temperature 1;
//                         at most 48 new tokens, stopping at EOS and at "\n\nHuman:"
//              rft        lr 1e-4, reward model lr 3e-4, KL 0.05, 2 samples per prompt (8 prompts an iteration)
//            each a child `bin/juice <method>` process (runs stay isolated), per seed (the seed sets the data order)
//   eval     before training (the base, once, in this process), 4 times during and at the end (the runs' eval
//            lines in metrics.jsonl): train/eval_pairs.ts's gap_sum, gap_tok, acc, chosen_nll
//   output   <out>/results.json (one object per run, rewritten after each run), <out>/base.json (the base's eval
//            and a few of its greedy generations), <out>/<run>/ (each run's folder and log.txt)
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gpu, initGpu } from '../../engine/gpu.ts';
import { loadCausalLM, loadConfigFor } from '../../models/causal_lm.ts';
import { rollout } from '../../models/rollout.ts';
import { Tokenizer } from '../../models/tokenizer.ts';
import { ChatTemplate, encodeExample, readExamples, type EncodeOptions } from '../data/index.ts';
import { isPair, pairMetrics, pairMetricsOf, PAIR_METRICS, type EncodedPair, type PairMetrics } from '../eval_pairs.ts';
import { stageSteps } from '../irft.ts';
import { METRICS_FILE, readMetrics } from '../metrics.ts';
import { responseOf } from '../reward_learning.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** ../shared/data beside the repository. */
export const DEFAULT_DATA_DIR = resolve(ROOT, '../shared/data');

export const HH_GAP = {
  batch: 16, epochs: 2, warmup: 10, beta2: 0.95, clip: 1, maxPromptLength: 96, maxResponseLength: 48, maxNewTokens: 48,
  stop: '\n\nHuman:', evalsDuring: 4, evalBatch: 16, promptsPerIteration: 8,
} as const;

export type HhGapMethod = 'sft' | 'irft' | 'rft';
export const HH_GAP_METHODS: readonly HhGapMethod[] = ['sft', 'irft', 'rft'];

/** One configuration of the grid (run once per seed). */
export interface HhGapRunSpec {
  /** A name for its folder and the --methods filter, e.g. irft-t4-greedy. */
  id: string;
  method: HhGapMethod;
  /** IRFT's T; 1 for SFT and RFT. */
  stages: number;
  lr: number;
  generation: 'greedy' | 'sample' | null;
  /** Method-specific flags of its command. */
  args: string[];
}

export const HH_GAP_RUNS: readonly HhGapRunSpec[] = [
  { id: 'sft-lr3e-4', method: 'sft', stages: 1, lr: 3e-4, generation: null, args: [] },
  { id: 'sft-lr3e-5', method: 'sft', stages: 1, lr: 3e-5, generation: null, args: [] },
  { id: 'irft-t1-greedy', method: 'irft', stages: 1, lr: 3e-5, generation: 'greedy', args: ['--stages', '1', '--epochs-per-stage', '2', '--beta', '0.1', '--temperature', '0'] },
  { id: 'irft-t4-greedy', method: 'irft', stages: 4, lr: 3e-5, generation: 'greedy', args: ['--stages', '4', '--epochs-per-stage', '2', '--beta', '0.1', '--temperature', '0'] },
  { id: 'irft-t1-sample', method: 'irft', stages: 1, lr: 3e-5, generation: 'sample', args: ['--stages', '1', '--epochs-per-stage', '2', '--beta', '0.1', '--temperature', '1'] },
  { id: 'rft', method: 'rft', stages: 1, lr: 1e-4, generation: 'sample', args: ['--reward-lr', '3e-4', '--kl-coef', '0.05', '--samples-per-prompt', '2', '--prompts-per-iteration', String(HH_GAP.promptsPerIteration), '--temperature', '1'] },
];

/** --methods: method names (sft, irft, rft) or run ids, comma-separated; unknown names are refused. */
export function selectRuns(text: string | undefined): HhGapRunSpec[] {
  if (text === undefined) return [...HH_GAP_RUNS];
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !HH_GAP_RUNS.some((r) => r.id === n || r.method === n));
  if (unknown.length > 0) throw new Error(`--methods: unknown ${unknown.join(', ')} (methods: ${HH_GAP_METHODS.join(', ')}; runs: ${HH_GAP_RUNS.map((r) => r.id).join(', ')})`);
  return HH_GAP_RUNS.filter((r) => names.includes(r.id) || names.includes(r.method));
}

export interface HhGapOptions {
  dataDir: string;
  out: string;
  runs: HhGapRunSpec[];
  seeds: number[];
  /** Shorten every run: SFT to this many steps (--max-steps); IRFT and RFT, which take their steps from the data, to
   * the first maxSteps·batch/epochs training prompts (a dry run). */
  maxSteps?: number;
  /** The first N training pairs only. */
  limit?: number;
  /** The first N eval pairs only. */
  evalLimit?: number;
  /** How many of the base's greedy generations to print. */
  samples?: number;
  log?: (line: string) => void;
}

export interface HhGapEval extends PairMetrics { step: number }

/** One row of results.json. */
export interface HhGapResult {
  run: string;
  method: HhGapMethod;
  stages: number;
  lr: number;
  seed: number;
  generation: 'greedy' | 'sample' | null;
  steps: number;
  /** Warmup steps: 10 of the full runs' ~250, scaled down with a shortened run. */
  warmup: number;
  max_steps: number | null;
  limit: number | null;
  eval_limit: number | null;
  train_pairs: number;
  eval_pairs: number;
  before: PairMetrics;
  evals: HhGapEval[];
  after: PairMetrics | null;
  seconds: number;
  exit_code: number;
  dir: string;
}

export interface HhGapPaths { model: string; train: string; eval: string }

export function hhGapPaths(dataDir: string): HhGapPaths {
  return {
    model: join(dataDir, 'hh-byte-base'),
    train: join(dataDir, 'hh-rlhf', 'harmless-base-test.train.jsonl.gz'),
    eval: join(dataDir, 'hh-rlhf', 'harmless-base-test.eval.jsonl.gz'),
  };
}

/** The missing inputs under dataDir (empty when the experiment can run). */
export function missingInputs(dataDir: string): string[] {
  const p = hhGapPaths(dataDir);
  return [join(p.model, 'config.json'), join(p.model, 'model.safetensors'), join(p.model, 'tokenizer.json'), p.train, p.eval].filter((f) => !existsSync(f));
}

/** Whether the adapter runs on the CPU (Mesa's lavapipe / llvmpipe, SwiftShader): one seed by default there. */
export function cpuAdapter(): boolean {
  const info = gpu().adapterInfo;
  return /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.architecture} ${info.vendor}`);
}

/** Training prompts that IRFT and RFT get under --max-steps: the count whose 2 epochs at batch 16 take that many steps. */
function limitFor(maxSteps: number | undefined, limit: number | undefined): number | undefined {
  if (maxSteps === undefined) return limit;
  const n = Math.max(1, Math.floor((maxSteps * HH_GAP.batch) / HH_GAP.epochs));
  return limit === undefined ? n : Math.min(n, limit);
}

/** The warmup of a run of `steps` steps: the full runs' 10 in 250, in proportion when shortened (at most 10). */
export function warmupFor(steps: number): number {
  return Math.min(HH_GAP.warmup, Math.floor((HH_GAP.warmup * steps) / 250));
}

/** The optimizer steps a run takes over n training pairs (as its command computes them). */
export function plannedSteps(spec: HhGapRunSpec, n: number, maxSteps: number | undefined): number {
  switch (spec.method) {
    case 'sft': return maxSteps ?? HH_GAP.epochs * Math.ceil(n / HH_GAP.batch);
    case 'irft': return stageSteps(n, spec.stages, HH_GAP.epochs, HH_GAP.batch).reduce((a, b) => a + b, 0);
    case 'rft': return Math.ceil((HH_GAP.epochs * n) / HH_GAP.promptsPerIteration);
  }
}

/** The child's command line (after `bin/juice`). */
export function runArgs(spec: HhGapRunSpec, paths: HhGapPaths, dir: string, seed: number, o: { maxSteps?: number; limit?: number; evalLimit?: number }, evalSteps: number, warmup: number): string[] {
  const limit = spec.method === 'sft' ? o.limit : limitFor(o.maxSteps, o.limit);
  const common = [
    '--model', paths.model, '--data', paths.train, '--out', dir, '--eval-data', paths.eval, '--eval-steps', String(evalSteps),
    '--seed', String(seed), '--batch', String(HH_GAP.batch), '--lr', String(spec.lr), '--schedule', 'constant_with_warmup', '--warmup', String(warmup),
    '--adam-beta1', '0.9', '--adam-beta2', String(HH_GAP.beta2), '--weight-decay', '0', '--clip', String(HH_GAP.clip),
    '--max-prompt-length', String(HH_GAP.maxPromptLength), '--max-response-length', String(HH_GAP.maxResponseLength),
    '--max-length', String(HH_GAP.maxPromptLength + HH_GAP.maxResponseLength), '--save-steps', '1000000000', '--log-steps', '5',
    ...(limit !== undefined ? ['--limit', String(limit)] : []), ...(o.evalLimit !== undefined ? ['--eval-limit', String(o.evalLimit)] : []),
  ];
  switch (spec.method) {
    case 'sft': return ['sft', ...common, '--epochs', String(HH_GAP.epochs), ...(o.maxSteps !== undefined ? ['--max-steps', String(o.maxSteps)] : [])];
    case 'irft': return ['irft', ...common, ...spec.args, '--max-new-tokens', String(HH_GAP.maxNewTokens), '--stop', HH_GAP.stop];
    case 'rft': return ['rft', ...common, ...spec.args, '--epochs', String(HH_GAP.epochs), '--max-new-tokens', String(HH_GAP.maxNewTokens), '--stop', HH_GAP.stop];
  }
}

/** Every eval line's four metrics, in step order, from a run folder's metrics.jsonl. */
export function runEvals(dir: string): HhGapEval[] {
  const out: HhGapEval[] = [];
  for (const r of readMetrics(join(dir, METRICS_FILE)).records) {
    if (r.type !== 'eval') continue;
    const m = pairMetricsOf(r as Record<string, unknown>);
    if (m !== null) out.push({ step: r.step, ...m });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * Runs `bin/juice ...args`, its output into logFile (and the lines that say where it stands into `log`). SIGINT and
 * SIGTERM to this process are passed on to the child, once, which checkpoints and exits 130 / 143 (`signal` says one
 * came): the child has a process group of its own, so a terminal's Ctrl-C does not reach it twice (a second signal
 * stops a run without its checkpoint).
 */
function runChild(args: string[], logFile: string, log: (l: string) => void, prefix: string): Promise<{ code: number; signal: NodeJS.Signals | null }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(ROOT, 'bin/juice'), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let received: NodeJS.Signals | null = null;
    const forward = (signal: NodeJS.Signals) => { received = signal; child.kill(signal); };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const file = createWriteStream(logFile);
    let pending = '';
    const onData = (chunk: Buffer) => {
      file.write(chunk);
      pending += chunk.toString('utf8');
      const lines = pending.split(/\r?\n|\r/);
      pending = lines.pop() ?? '';
      for (const l of lines) if (/^(eval at|stage \d|done at|stopped at|juice \w+:)|error|Error/.test(l)) log(`${prefix} ${l}`);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      file.end();
      resolvePromise({ code: code ?? (signal ? 128 : 1), signal: received });
    });
  });
}

export interface BaseReport { before: PairMetrics; eval_pairs: number; samples: { prompt: string; generation: string; demonstration: string }[] }

/** The base's eval (what every run starts from) and its greedy generations of the first eval prompts. */
export async function evaluateBase(paths: HhGapPaths, evalLimit: number | undefined, samples: number): Promise<BaseReport> {
  const config = loadConfigFor(paths.model, 'lm');
  const tokenizer = Tokenizer.fromFolder(paths.model);
  const eos = (Array.isArray(config.eosTokenId) ? config.eosTokenId[0] : config.eosTokenId ?? tokenizer.eosTokenId) as number;
  const padId = tokenizer.padTokenId ?? config.padTokenId ?? eos;
  const template = existsSync(join(paths.model, 'tokenizer_config.json')) ? ChatTemplate.fromTokenizerConfig(paths.model) : null;
  const enc: EncodeOptions = {
    maxPromptLength: HH_GAP.maxPromptLength, maxLength: HH_GAP.maxPromptLength + HH_GAP.maxResponseLength, maxResponseLength: HH_GAP.maxResponseLength, eosTokenId: eos, template,
  };
  const read = await readExamples(paths.eval, { limit: evalLimit });
  const pairs = read.examples.map((e) => encodeExample(tokenizer, e, enc)).filter(isPair) as EncodedPair[];
  const model = loadCausalLM(paths.model);
  try {
    const before = await pairMetrics(model, pairs, HH_GAP.evalBatch, padId);
    const shown = pairs.slice(0, samples);
    const prompts = shown.map((p) => Array.from(p.ids.subarray(0, p.promptLength)));
    const { rows } = shown.length > 0
      ? await rollout(model, prompts, { maxNewTokens: HH_GAP.maxNewTokens, eosTokenIds: [eos], stopStrings: [HH_GAP.stop], decoder: tokenizer, temperature: 0, seed: 0, batchSize: shown.length })
      : { rows: [] };
    const text = (ids: ArrayLike<number>) => tokenizer.decode(Array.from(ids), { skipSpecialTokens: true });
    return {
      before, eval_pairs: pairs.length,
      samples: rows.map((row, i) => ({
        prompt: text(prompts[i]),
        generation: text(responseOf(row, tokenizer, [HH_GAP.stop], eos)),
        demonstration: text(shown[i].ids.subarray(shown[i].promptLength)),
      })),
    };
  } finally {
    model.dispose();
  }
}

const f = (x: number | undefined, d = 3) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));

/** The table of the eval gap and accuracy before and after, per method and seed. */
export function resultsTable(results: readonly HhGapResult[]): string {
  const head = ['run'.padEnd(16), 'seed'.padStart(4), 'steps'.padStart(5), 'gap_sum'.padStart(16), 'gap_tok'.padStart(16), 'acc'.padStart(13), 'chosen_nll'.padStart(13), 'seconds'.padStart(8)];
  const arrow = (a: number, b: number | undefined, d: number) => `${f(a, d)} → ${f(b, d)}`;
  const lines = [head.join(' ')];
  for (const r of results) {
    lines.push([r.run.padEnd(16), String(r.seed).padStart(4), String(r.evals.at(-1)?.step ?? 0).padStart(5),
      arrow(r.before.gap_sum, r.after?.gap_sum, 2).padStart(16), arrow(r.before.gap_tok, r.after?.gap_tok, 3).padStart(16),
      arrow(r.before.acc, r.after?.acc, 3).padStart(13), arrow(r.before.chosen_nll, r.after?.chosen_nll, 3).padStart(13), r.seconds.toFixed(0).padStart(8)].join(' '));
  }
  return lines.join('\n');
}

/** The whole experiment; returns the rows of results.json (also written there after each run). */
export async function runHhGap(o: HhGapOptions): Promise<{ results: HhGapResult[]; base: BaseReport; stopped: NodeJS.Signals | null }> {
  const log = o.log ?? ((l: string) => console.log(l));
  const missing = missingInputs(o.dataDir);
  if (missing.length > 0) throw new Error(`hh-gap: missing ${missing.join(', ')} (pass --data-dir)`);
  const paths = hhGapPaths(o.dataDir);
  mkdirSync(o.out, { recursive: true });
  await initGpu();

  const t0 = performance.now();
  const base = await evaluateBase(paths, o.evalLimit, o.samples ?? 4);
  writeFileSync(join(o.out, 'base.json'), JSON.stringify(base, null, 2) + '\n');
  log(`base on ${base.eval_pairs} eval pairs: ${PAIR_METRICS.map((k) => `${k} ${f(base.before[k], 4)}`).join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  log(`the base's greedy generations (at most ${HH_GAP.maxNewTokens} tokens, stopping at EOS and ${JSON.stringify(HH_GAP.stop)}):`);
  for (const s of base.samples) log(`  ...${JSON.stringify(s.prompt.slice(-80))}\n    base: ${JSON.stringify(s.generation)}\n    demo: ${JSON.stringify(s.demonstration)}`);

  const trainPairs = (await readExamples(paths.train, { limit: o.limit })).examples.length;
  const results: HhGapResult[] = [];
  let stopped: NodeJS.Signals | null = null; // a SIGINT or SIGTERM passed on to a run ends the experiment after it
  for (const seed of o.seeds) {
    for (const spec of o.runs) {
      if (stopped) break;
      const name = `${spec.id}-seed${seed}`;
      const dir = join(o.out, name);
      rmSync(dir, { recursive: true, force: true }); // a fresh run: this folder is the experiment's own
      mkdirSync(dir, { recursive: true });
      const n = spec.method === 'sft' ? trainPairs : Math.min(trainPairs, limitFor(o.maxSteps, o.limit) ?? trainPairs);
      const steps = plannedSteps(spec, n, spec.method === 'sft' ? o.maxSteps : undefined);
      const evalSteps = Math.max(1, Math.ceil(steps / (HH_GAP.evalsDuring + 1))); // 4 during, then the last
      const warmup = warmupFor(steps);
      const args = runArgs(spec, paths, dir, seed, o, evalSteps, warmup);
      log(`\n[${name}] ${steps} steps over ${n} training pairs, eval every ${evalSteps}: bin/juice ${args.map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
      const started = performance.now();
      const { code, signal } = await runChild(args, join(dir, 'log.txt'), log, `[${name}]`);
      stopped = signal;
      const seconds = (performance.now() - started) / 1000;
      const evals = existsSync(join(dir, METRICS_FILE)) ? runEvals(dir) : [];
      const last = evals.at(-1);
      results.push({
        run: spec.id, method: spec.method, stages: spec.stages, lr: spec.lr, seed, generation: spec.generation, steps, warmup,
        max_steps: o.maxSteps ?? null, limit: o.limit ?? null, eval_limit: o.evalLimit ?? null, train_pairs: n, eval_pairs: base.eval_pairs,
        before: base.before, evals, after: code === 0 && last ? { gap_sum: last.gap_sum, gap_tok: last.gap_tok, acc: last.acc, chosen_nll: last.chosen_nll } : null,
        seconds, exit_code: code, dir,
      });
      writeFileSync(join(o.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
      log(`[${name}] ${signal ? `stopped by ${signal} (exit ${code}; its checkpoint resumes it)` : code === 0 ? 'done' : `FAILED (exit ${code}; ${join(dir, 'log.txt')})`} in ${seconds.toFixed(0)} s${evals.length === 0 ? '; no eval lines with the pair metrics' : ''}`);
    }
  }
  if (stopped) log(`\nstopped by ${stopped}: the runs after it were not started`);
  log(`\n${resultsTable(results)}\n\n${join(o.out, 'results.json')}`);
  return { results, base, stopped };
}
