// The record every reader produces, and the error every reader throws.

/** One chat turn, as chat templates and the Hugging Face datasets write it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/**
 * A prompt is either text, used as written (HH-RLHF, plain prompt/response files), or the chat
 * messages before the demonstration (UltraChat/SPIN, `messages` files), which a chat template turns
 * into text (see chat_template.ts).
 */
export type Prompt = string | ChatMessage[];

/** Where a record came from: the file as given to the reader and its 1-based line. */
export interface SourceLine {
  file: string;
  line: number;
}

/**
 * One demonstration. `response` is the text the loss is taken on (the assistant turn's content
 * when the prompt is chat messages); `rejected` is a dispreferred response for the same prompt,
 * kept for evaluation pairs.
 */
export interface Example {
  prompt: Prompt;
  response: string;
  rejected?: string;
  source: SourceLine;
}

/** hh: `{chosen, rejected}` dialogues; spin: `{real, generated}`; messages: `{messages}`; prompt-response: `{prompt, response, rejected?}`. */
export type DataFormat = 'hh' | 'spin' | 'messages' | 'prompt-response';
export const DATA_FORMATS: readonly DataFormat[] = ['hh', 'spin', 'messages', 'prompt-response'];

/** Why a line is not a record; the keys of `ReadResult.skippedByReason`. */
export type BadLineReason =
  | 'invalid JSON'
  | 'not an object'
  | 'missing field'
  | 'wrong type'
  | 'no assistant turn'
  | 'no user turn'
  | 'empty response'
  | 'prompt mismatch'
  | 'line too long';

/** A line that is not a record: names the file, the 1-based line, the field (null when the line as a whole is at fault), and why. */
export class DataError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string | null,
    readonly reason: BadLineReason | 'unknown format',
    detail: string,
  ) {
    super(`${file}:${line}: ${field === null ? '' : `field "${field}": `}${detail}`);
    this.name = 'DataError';
  }
}
