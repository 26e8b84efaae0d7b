// The commands on a model whose embedding and head are larger than one storage binding, as Pythia's (154 MB) are on
// lavapipe (128 MiB): a byte-level GPT-NeoX with a 2048-token vocabulary and hidden size 64 (tables of 512 KiB) run
// as is, and with the binding size cut to 64 KiB (JUICE_MAX_BINDING_BYTES), where every table is bound in eight
// windows of 256 rows (the bytes in the first, BOS and EOS in the second) and the rest of the model in one binding a
// tensor. `juice sft` (with held-out pairs and a checkpoint) and `juice irft` from it (its generations, whose ids its
// losses depend on, its reference and policy passes) agree to 1e-5 in every loss and metric (the head's chunks and
// the grad norm's partials change the order of additions).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tinyConfigJson, writeByteModel } from '../support/byte_model.ts';
import { juiceRun } from '../support/juice_child.ts';

const WINDOW = 65536;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'juice-windows-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const model = writeByteModel(path.join(tmp, 'model'), tinyConfigJson({ vocab_size: 2048, hidden_size: 64 }));
const words = ['abc', 'fed', 'cabbage', 'bead', 'face', 'dab', 'acedb', 'decaf'];
const data = path.join(tmp, 'data.jsonl');
fs.writeFileSync(data, words.map((w) => JSON.stringify({ prompt: `Q: ${w}\nA:`, response: ` ${[...w].reverse().join('')}` })).join('\n') + '\n');
const pairs = path.join(tmp, 'pairs.jsonl');
fs.writeFileSync(pairs, words.slice(0, 4).map((w) => JSON.stringify({ chosen: `\n\nHuman: ${w}\n\nAssistant: ${[...w].reverse().join('')}`, rejected: `\n\nHuman: ${w}\n\nAssistant: ${w}` })).join('\n') + '\n');
const LENGTHS = ['--max-length', '32', '--max-prompt-length', '16'];

/** Runs `juice command ...args` in a child process with extra environment variables; asserts that it succeeded. */
async function juice(env: Record<string, string>, command: string, ...args: string[]): Promise<void> {
  const run = juiceRun(command, args, env);
  const { code } = await run.exited;
  assert.is(code, 0, `juice ${command} ${args.join(' ')} (${JSON.stringify(env)}):\n${run.output()}`);
}

const records = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

/** Each record's numbers that do not measure time or memory. */
function numbers(dir: string): number[] {
  return records(dir).flatMap((r) => Object.entries(r).filter(([k, v]) => typeof v === 'number' && !/time|_s$|bytes/.test(k)).map(([, v]) => v as number));
}

async function runAll(label: string, env: Record<string, string>) {
  const sft = path.join(tmp, `sft-${label}`), irft = path.join(tmp, `irft-${label}`);
  await juice(env, 'sft', '--model', model, '--data', data, '--out', sft, '--max-steps', '3', '--lr', '1e-3', '--eval-data', pairs, '--batch', '2', ...LENGTHS);
  const checkpoint = path.join(sft, 'checkpoint-3');
  // Untimed, the run probes no peak (whose 512 x 512 operands would not fit 64 KiB).
  await juice(env, 'irft', '--model', checkpoint, '--data', data, '--limit', '4', '--out', irft, '--stages', '2', '--max-new-tokens', '6',
    '--lr', '1e-3', '--eval-data', pairs, '--batch', '1', ...LENGTHS); // a pair a step: demonstration and generation
  const ledger = JSON.parse(fs.readFileSync(path.join(sft, 'ledger.json'), 'utf8')) as { entries: { op: string; dispatches: number }[] };
  const embeddings = ledger.entries.filter((e) => e.op === 'embedding').reduce((n, e) => n + e.dispatches, 0);
  return { sft: numbers(sft), irft: numbers(irft), embeddings };
}

test('sft and irft on a model whose tables exceed one binding agree with the one-binding run', async () => {
  const whole = await runAll('whole', {});
  const windowed = await runAll('windowed', { JUICE_MAX_BINDING_BYTES: String(WINDOW) });
  assert.is(windowed.embeddings, 8 * whole.embeddings, 'the table is read in eight windows');
  for (const part of ['sft', 'irft'] as const) {
    assert.is(windowed[part].length, whole[part].length, `${part}: the same records`);
    assert.ok(whole[part].length > 10, `${part}: ${whole[part].length} numbers`);
    whole[part].forEach((x, i) => assert.ok(Math.abs(windowed[part][i] - x) <= 1e-5 * Math.max(1, Math.abs(x)), `${part} number ${i}: ${windowed[part][i]} against ${x}`));
  }
});

test.run();
