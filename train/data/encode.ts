// Examples to token ids with a response mask, truncated as TRL and the paper's code do.
//
// ids = prompt ids ++ response ids; responseMask[t] = 1 where ids[t] is a response token (the EOS
// included): the tokens whose prediction the loss counts. The mask is aligned with ids, not shifted:
// the loss on ids[t] comes from the logits at t - 1.
//
// Tokenisation: prompt and prompt+response are encoded without special tokens and the response is
// what follows their common prefix (old TRL's build_tokenized_answer: a token merged across the
// boundary goes to the response), so ids are exactly the tokens of the whole text. A tokenizer
// whose post-processor prepends BOS gets it once at the front (not twice when a chat template
// already wrote bos_token), and prompt truncation keeps it first.
import type { Tokenizer } from '../../models/tokenizer.ts';
import { exampleTexts, type ChatTemplate } from './chat_template.ts';
import type { Example, SourceLine } from './types.ts';

export type TokenizerLike = Pick<Tokenizer, 'encode' | 'bosTokenId' | 'eosTokenId'>;

export interface EncodeOptions {
  /** The prompt keeps its last tokens (and BOS first): at most this many in all. Default 128. */
  maxPromptLength?: number;
  /** Prompt + response at most this many tokens, cut from the response's end. Default 512. */
  maxLength?: number;
  /** The response (EOS included) at most this many tokens, cut from its end before the maxLength cut. */
  maxResponseLength?: number;
  /** Append EOS to the response before truncation, unless it already ends with it. Default true. */
  appendEos?: boolean;
  /** Overrides the tokenizer's EOS id (GPT-NeoX's tokenizer.json alone names none). */
  eosTokenId?: number;
  /** Renders chat prompts; null or absent: chat prompts become an HH dialogue (see exampleTexts). */
  template?: ChatTemplate | null;
}

export interface EncodedSequence {
  ids: Int32Array;
  responseMask: Uint8Array;
  promptLength: number;
  responseLength: number;
  /** Whether tokens were cut: from the prompt's front, from the response's end (then it has no EOS). */
  truncated: { prompt: boolean; response: boolean };
}

export interface EncodedExample extends EncodedSequence {
  /** The rejected response after the same prompt, for evaluation pairs. */
  rejected?: EncodedSequence;
  source: SourceLine;
}

const addsBosCache = new WeakMap<TokenizerLike, boolean>();

/** Whether encoding with special tokens puts BOS in front (Mistral, hh-byte-base do; GPT-NeoX does not). */
function addsBos(tokenizer: TokenizerLike): boolean {
  let adds = addsBosCache.get(tokenizer);
  if (adds === undefined) {
    const bos = tokenizer.bosTokenId;
    adds = bos !== null && tokenizer.encode('a', { addSpecialTokens: true })[0] === bos && tokenizer.encode('a', { addSpecialTokens: false })[0] !== bos;
    addsBosCache.set(tokenizer, adds);
  }
  return adds;
}

function checkOptions(o: EncodeOptions): Required<Pick<EncodeOptions, 'maxPromptLength' | 'maxLength'>> {
  const maxPromptLength = o.maxPromptLength ?? 128;
  const maxLength = o.maxLength ?? 512;
  const positive = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new Error(`encode: ${name} must be a positive integer, got ${v}`);
  };
  positive('maxPromptLength', maxPromptLength);
  positive('maxLength', maxLength);
  positive('maxResponseLength', o.maxResponseLength);
  if (maxPromptLength >= maxLength) throw new Error(`encode: maxPromptLength (${maxPromptLength}) must be less than maxLength (${maxLength}) so that a response token remains`);
  return { maxPromptLength, maxLength };
}

/** Encodes a prompt and its response text; see the file comment for the rules. */
export function encodeTexts(tokenizer: TokenizerLike, prompt: string, response: string, options: EncodeOptions = {}): EncodedSequence {
  const { maxPromptLength, maxLength } = checkOptions(options);
  const p = tokenizer.encode(prompt, { addSpecialTokens: false });
  const full = tokenizer.encode(prompt + response, { addSpecialTokens: false });
  let common = 0;
  while (common < p.length && common < full.length && p[common] === full[common]) common++;
  let promptIds = full.slice(0, common);
  let responseIds = full.slice(common);
  const bos = tokenizer.bosTokenId;
  const withBos = addsBos(tokenizer) && (promptIds.length === 0 || promptIds[0] !== bos);
  if (withBos) promptIds.unshift(bos as number);
  const keepsBosFirst = bos !== null && promptIds[0] === bos;

  if (options.appendEos ?? true) {
    const eos = options.eosTokenId ?? tokenizer.eosTokenId;
    if (eos === null) throw new Error('encode: the tokenizer names no EOS token: pass eosTokenId, or appendEos: false');
    if (responseIds[responseIds.length - 1] !== eos) responseIds.push(eos);
  }
  const responseTokens = responseIds.length;

  const truncatedPrompt = promptIds.length > maxPromptLength;
  if (truncatedPrompt) {
    // Keep the end, which holds the question being answered; BOS stays in front.
    promptIds = keepsBosFirst
      ? [promptIds[0], ...promptIds.slice(promptIds.length - (maxPromptLength - 1))]
      : promptIds.slice(promptIds.length - maxPromptLength);
  }
  if (options.maxResponseLength !== undefined) responseIds = responseIds.slice(0, options.maxResponseLength);
  responseIds = responseIds.slice(0, maxLength - promptIds.length);

  const ids = new Int32Array(promptIds.length + responseIds.length);
  ids.set(promptIds, 0);
  ids.set(responseIds, promptIds.length);
  const responseMask = new Uint8Array(ids.length);
  responseMask.fill(1, promptIds.length);
  return {
    ids,
    responseMask,
    promptLength: promptIds.length,
    responseLength: responseIds.length,
    truncated: { prompt: truncatedPrompt, response: responseIds.length < responseTokens },
  };
}

/** Encodes an example (its chat prompt through `options.template`), and its rejected response when it has one. */
export function encodeExample(tokenizer: TokenizerLike, example: Example, options: EncodeOptions = {}): EncodedExample {
  const texts = exampleTexts(example, options.template ?? null);
  const chosen = encodeTexts(tokenizer, texts.prompt, texts.response, options);
  const encoded: EncodedExample = { ...chosen, source: example.source };
  if (texts.rejected !== undefined) encoded.rejected = encodeTexts(tokenizer, texts.prompt, texts.rejected, options);
  return encoded;
}
