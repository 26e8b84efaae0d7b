// Supervised fine-tuning (`juice sft`): the SFT objective on the shared loop (train/loop.ts).
//
//   read     the records (readExamples), encoded with the model's tokenizer and chat template (encodeExample:
//            prompt + response + EOS, truncated as TRL does)
//   plan     a step is grad-accum micro-batches of `batch` sequences from the DataLoader (a seeded shuffle per
//            epoch, its cursor in the checkpoint); each micro-batch's loss is sftMicroLoss over the response tokens
//            of the whole step, so that the step's loss is the mean response-token NLL (transformers >= 4.46)
//   evaluate eval_loss: the same mean over the eval set; for records with a rejected response (HH) also
//            train/eval_pairs.ts's eval_gap_sum, eval_gap_tok, eval_acc and eval_chosen_nll (log p(chosen) -
//            log p(rejected) summed and per token, the fraction of pairs where the chosen is the more likely)
//   audit    every micro-batch, update and evaluation batch recorded as IRFT and RFT record theirs (train/audit.ts),
//            ledger.json and workloads.json in each checkpoint and the run folder (juice audit)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initGpu } from '../engine/gpu.ts';
import { memoryPlan } from '../engine/params.ts';
import { ledger } from '../engine/ledger.ts';
import { Tensor } from '../engine/tensor.ts';
import { loadConfigFor, type CausalLM } from '../models/causal_lm.ts';
import { Tokenizer } from '../models/tokenizer.ts';
import { ChatTemplate, DataLoader, encodeExample, readExamples, type Cursor, type EncodedExample, type PaddedBatch } from './data/index.ts';
import { auditPeak, OPTIMIZER_KERNEL_FLOPS, RunAudit, trainableElements, Workloads } from './audit.ts';
import type { CheckpointFile } from './checkpoint.ts';
import { isPair, pairEvalKeys, pairMetrics, rowLogprobs, scoredTokens } from './eval_pairs.ts';
import { trainLoop, type EvalResult, type LoopResult, type Objective, type StepPlan } from './loop.ts';
import { sftMicroLoss } from './objectives/sft.ts';
import { loadPolicy } from './policy.ts';
import { lossScalingOf, loopOptionsOf, RunConfigError, runSetup, type TrainingOptions } from './run_config.ts';
import { makeSchedule } from './schedule.ts';


/** Response tokens of a padded batch that the loss counts: the mask, position 0 excepted (it has no prediction). */
function countedTokens(b: PaddedBatch): number {
  let n = 0;
  for (let i = 0; i < b.responseMask.length; i++) if (i % b.T !== 0) n += b.responseMask[i];
  return n;
}

function batchTensors(b: PaddedBatch): { ids: Tensor; mask: Tensor } {
  return { ids: Tensor.fromArray(b.ids, [b.B, b.T], 'i32'), mask: Tensor.fromArray(Float32Array.from(b.responseMask), [b.B, b.T]) };
}

export class SftObjective implements Objective {
  constructor(
    private readonly model: CausalLM,
    private readonly loader: DataLoader<EncodedExample>,
    private readonly gradAccum: number,
    private readonly evalSet: readonly EncodedExample[],
    private readonly evalBatch: number,
    private readonly padId: number,
    /** The run's audit: each micro-batch, update and evaluation batch recorded into its workloads, its files in each checkpoint. */
    private readonly audit?: RunAudit,
  ) {}

  private recordEval = (count: number, T: number) => this.audit?.workloads.forward('evaluation', count, T, 'all', { lora: this.model.lora !== undefined });

  async plan(step: number): Promise<StepPlan> {
    const batches = Array.from({ length: this.gradAccum }, () => this.loader.next());
    const total = batches.reduce((n, b) => n + countedTokens(b), 0);
    if (total === 0) throw new RunConfigError(`step ${step}: the step's sequences have no response token to train on (raise --max-length or lower --max-prompt-length)`);
    const micros = batches.map((b) => () => {
      const { ids, mask } = batchTensors(b);
      return sftMicroLoss(this.model.tokenLogprobs(ids), mask, total);
    });
    const tokens = batches.reduce((n, b) => n + b.lengths.reduce((a, l) => a + l, 0), 0);
    if (this.audit) {
      const w = this.audit.workloads;
      for (const b of batches) w.trained('policy', b.B, b.T, 'all', this.model.lora !== undefined);
      w.optimizer(trainableElements(this.model.params));
      w.data.tokens.trained += tokens;
    }
    const lastBatch = batches[batches.length - 1];
    return {
      micros,
      tokens,
      epoch: lastBatch.epoch + (lastBatch.position + 1) / this.loader.batchesPerEpoch,
      extra: { response_tokens: total },
    };
  }

  get evaluate(): (() => Promise<EvalResult>) | undefined {
    if (this.evalSet.length === 0) return undefined;
    return async () => {
      const pairs = this.evalSet.filter(isPair);
      const m = pairs.length > 0 ? await pairMetrics(this.model, pairs, this.evalBatch, this.padId, this.recordEval) : null;
      // Every record a pair: eval_loss is the pairs' chosen_nll, no second pass.
      if (m !== null && pairs.length === this.evalSet.length) return { eval_loss: m.chosen_nll, ...pairEvalKeys(m) };
      const sums = await rowLogprobs(this.model, this.evalSet, this.evalBatch, this.padId, this.recordEval);
      const tokens = this.evalSet.reduce((n, e) => n + scoredTokens(e), 0);
      return { eval_loss: -sums.reduce((a, b) => a + b, 0) / Math.max(1, tokens), ...(m ? pairEvalKeys(m) : {}) };
    };
  }

  state(): { cursor: Cursor } { return { cursor: this.loader.cursor() }; }

  files(): CheckpointFile[] { return this.audit?.files() ?? []; }

  restore(state: unknown): void {
    const cursor = (state as { cursor?: Cursor } | null)?.cursor;
    if (!cursor) throw new RunConfigError('the checkpoint\'s trainer state has no data cursor (objective.cursor)');
    this.loader.restore(cursor);
  }
}

/** Reads and encodes a data file; reports what it read. */
async function encodeFile(file: string, tokenizer: Tokenizer, o: TrainingOptions, eosTokenId: number, template: ChatTemplate | null, limit: number | undefined, log: (l: string) => void): Promise<EncodedExample[]> {
  const read = await readExamples(file, { limit, skipBadLines: o['skip-bad-lines'] });
  if (read.examples.length === 0) throw new RunConfigError(`${file}: no records`);
  const encoded = read.examples.map((e) => encodeExample(tokenizer, e, {
    maxPromptLength: o['max-prompt-length'], maxLength: o['max-length'], maxResponseLength: o['max-response-length'], eosTokenId, template,
  }));
  const cut = (f: (e: EncodedExample) => boolean) => encoded.filter(f).length;
  const skipped = read.skipped > 0 ? `, ${read.skipped} bad lines skipped (${Object.entries(read.skippedByReason).map(([r, n]) => `${n} ${r}`).join(', ')})` : '';
  const tokens = encoded.reduce((n, e) => n + e.ids.length, 0);
  log(`${file}: ${encoded.length} ${read.format} records${skipped}; ${tokens} tokens (mean ${(tokens / encoded.length).toFixed(1)}); prompt cut in ${cut((e) => e.truncated.prompt)}, response cut in ${cut((e) => e.truncated.response)}`);
  return encoded;
}



/** `juice sft`: checks the inputs, loads, and trains; returns the loop's result (its exit code) and the audit's table. */
export async function runSft(o: TrainingOptions, log: (l: string) => void = (l) => console.log(l)): Promise<LoopResult & { audit: string }> {
  // Everything that can be checked without the GPU, first.
  const config = loadConfigFor(o.model, 'lm');
  if (o['max-length'] > config.maxPositions) throw new RunConfigError(`--max-length ${o['max-length']} exceeds the model's ${config.maxPositions} positions (max_position_embeddings)`);
  const { tokenizer, eos, padId, targets, resumeDir } = runSetup(o, config, log);
  const template = existsSync(join(o.model, 'tokenizer_config.json')) ? ChatTemplate.fromTokenizerConfig(o.model) : null;
  const train = await encodeFile(o.data, tokenizer, o, eos, template, o.limit, log);
  const evalSet = o['eval-data'] !== undefined ? await encodeFile(o['eval-data'], tokenizer, o, eos, template, o['eval-limit'], log) : [];

  const loader = new DataLoader(train, { batchSize: o.batch, seed: o.seed, padId });
  const totalSteps = o['max-steps'] ?? Math.max(1, Math.ceil((o.epochs * loader.batchesPerEpoch) / o['grad-accum']));
  const schedule = makeSchedule({
    kind: o.schedule, lr: o.lr, totalSteps,
    ...(o.warmup >= 1 ? { warmupSteps: o.warmup } : { warmupRatio: o.warmup }),
  });

  await initGpu();
  const lora = o['lora-r'] !== undefined ? { r: o['lora-r'], alpha: o['lora-alpha'] ?? o['lora-r'], dropout: o['lora-dropout'], targets } : undefined;
  const audit = new RunAudit(new Workloads(config, {
    lora: lora ? { r: lora.r, targets: targets!, dropout: lora.dropout } : undefined, optimizerFlopsPerElement: OPTIMIZER_KERNEL_FLOPS[o.optimizer],
    gradientCheckpointing: { policy: o['gradient-checkpointing'] }, mixedPrecision: { policy: lossScalingOf(o) !== undefined },
  }));
  if (resumeDir !== undefined) audit.restore(resumeDir);
  const policy = loadPolicy({ modelDir: o.model, weightsDtype: o['weights-dtype'], seed: o.seed, lora }, resumeDir);
  policy.gradientCheckpointing = o['gradient-checkpointing'];
  try {
    Object.assign(audit.workloads.data, await auditPeak(o));
    if (o['time-kernels']) ledger.timing = true;
    const plan = memoryPlan(policy.params.specs, { weightDtype: o['weights-dtype'] });
    log(`juice sft: ${config.modelType}, ${plan.parameters.toLocaleString('en-US')} parameters, ${plan.trainableParameters.toLocaleString('en-US')} trained${policy.lora ? ` (LoRA r ${policy.lora.config.r}, alpha ${policy.lora.config.alpha}, on ${policy.lora.config.targetModules.join(', ')})` : ''}; ` +
      `${totalSteps} steps of ${o['grad-accum']} x ${o.batch} sequences (${loader.batchesPerEpoch} batches an epoch); ${o.schedule} schedule, lr ${o.lr}, ${schedule.warmupSteps} warmup steps`);
    const objective = new SftObjective(policy, loader, o['grad-accum'], evalSet, o.batch, padId, audit);
    const result = await trainLoop({
      outDir: o.out, policy, sourceDir: o.model, objective,
      ...loopOptionsOf(o, 'sft'), schedule, totalSteps, resumeFrom: resumeDir, log,
    });
    return { ...result, audit: audit.write(o.out) };
  } finally {
    ledger.timing = false;
    policy.dispose();
  }
}
