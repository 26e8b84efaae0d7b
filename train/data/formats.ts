// Readers for the demonstration datasets: Anthropic HH-RLHF, UltraChat/SPIN, chat `messages` lists
// and plain prompt/response files, all JSONL (plain or .gz), one record per line.
//
// A line that is not a record is a DataError naming the file, the line and the field. Nothing is
// skipped unless the caller asks (`skipBadLines`), and then the skipped lines are counted by reason.
// Blank lines are not records and are not errors; they are counted in `blankLines`.
import { readLines } from './jsonl.ts';
import { DataError, DATA_FORMATS, type BadLineReason, type ChatMessage, type DataFormat, type Example, type SourceLine } from './types.ts';

/** The separator before each assistant turn of an HH-RLHF dialogue. */
export const HH_ASSISTANT = '\n\nAssistant:';
/** The separator before each human turn of an HH-RLHF dialogue. */
export const HH_HUMAN = '\n\nHuman:';

export interface ReadOptions {
  /** Forces the format; by default it is detected from the keys of the first record of the file. */
  format?: DataFormat;
  /** Stop after this many records. */
  limit?: number;
  /** Skip lines that are not records instead of throwing; they are counted in the result. */
  skipBadLines?: boolean;
}

export interface ReadResult {
  examples: Example[];
  /** The format used: the forced or detected one; null when the file has no record to detect it from. */
  format: DataFormat | null;
  /** Lines read, including blank and skipped ones (fewer than the file's when `limit` stopped early). */
  linesRead: number;
  blankLines: number;
  skipped: number;
  skippedByReason: Partial<Record<BadLineReason, number>>;
  /** The errors of the skipped lines, in file order. */
  skippedErrors: DataError[];
}

type Json = Record<string, unknown>;

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** The format whose keys the record has, or null. */
export function detectFormat(record: Json): DataFormat | null {
  if ('chosen' in record && 'rejected' in record) return 'hh';
  if ('real' in record) return 'spin';
  if ('messages' in record) return 'messages';
  if ('prompt' in record && 'response' in record) return 'prompt-response';
  return null;
}

class RecordParser {
  constructor(private readonly record: Json, private readonly source: SourceLine) {}

  fail(field: string | null, reason: BadLineReason, detail: string): never {
    throw new DataError(this.source.file, this.source.line, field, reason, detail);
  }

  string(key: string): string {
    const v = this.record[key];
    if (v === undefined) this.fail(key, 'missing field', 'missing');
    if (typeof v !== 'string') this.fail(key, 'wrong type', `expected a string, got ${typeName(v)}`);
    return v;
  }

  optionalString(key: string): string | undefined {
    return this.record[key] === undefined ? undefined : this.string(key);
  }

  messages(key: string): ChatMessage[] {
    const v = this.record[key];
    if (v === undefined) this.fail(key, 'missing field', 'missing');
    if (!Array.isArray(v)) this.fail(key, 'wrong type', `expected an array of {role, content} messages, got ${typeName(v)}`);
    return v.map((m: unknown, i) => {
      const at = `${key}[${i}]`;
      if (typeof m !== 'object' || m === null || Array.isArray(m)) this.fail(at, 'wrong type', `expected a {role, content} message, got ${typeName(m)}`);
      const { role, content } = m as Json;
      if (role === undefined) this.fail(`${at}.role`, 'missing field', 'missing');
      if (typeof role !== 'string') this.fail(`${at}.role`, 'wrong type', `expected a string, got ${typeName(role)}`);
      if (content === undefined) this.fail(`${at}.content`, 'missing field', 'missing');
      if (typeof content !== 'string') this.fail(`${at}.content`, 'wrong type', `expected a string, got ${typeName(content)}`);
      return { role, content };
    });
  }

  /** HH: the prompt is the text up to and including the last "\n\nAssistant:", the response what follows. */
  hhSplit(key: string): { prompt: string; response: string } {
    const text = this.string(key);
    const at = text.lastIndexOf(HH_ASSISTANT);
    if (at < 0) this.fail(key, 'no assistant turn', `no ${JSON.stringify(HH_ASSISTANT)} in the text`);
    const end = at + HH_ASSISTANT.length;
    const response = text.slice(end);
    if (response === '') this.fail(key, 'empty response', `nothing follows the last ${JSON.stringify(HH_ASSISTANT)}`);
    return { prompt: text.slice(0, end), response };
  }

  /** Chat: the messages before the first assistant turn are the prompt (at least one user turn), that turn's content the response. */
  chatSplit(key: string): { prompt: ChatMessage[]; response: string } {
    const messages = this.messages(key);
    const a = messages.findIndex((m) => m.role === 'assistant');
    if (a < 0) this.fail(key, 'no assistant turn', 'no message with role "assistant"');
    if (!messages.slice(0, a).some((m) => m.role === 'user')) this.fail(key, 'no user turn', 'no message with role "user" before the first "assistant" one');
    if (messages[a].content === '') this.fail(`${key}[${a}].content`, 'empty response', 'the first assistant turn is empty');
    return { prompt: messages.slice(0, a), response: messages[a].content };
  }

  parse(format: DataFormat): Example {
    const source = this.source;
    switch (format) {
      case 'hh': {
        const chosen = this.hhSplit('chosen');
        const rejected = this.hhSplit('rejected');
        if (rejected.prompt !== chosen.prompt) {
          let i = 0;
          while (i < chosen.prompt.length && chosen.prompt[i] === rejected.prompt[i]) i++;
          this.fail('rejected', 'prompt mismatch', `the text up to its last ${JSON.stringify(HH_ASSISTANT)} differs from chosen's (from character ${i})`);
        }
        return { prompt: chosen.prompt, response: chosen.response, rejected: rejected.response, source };
      }
      case 'spin': {
        const real = this.chatSplit('real');
        if (this.record.generated === undefined) return { prompt: real.prompt, response: real.response, source };
        const generated = this.chatSplit('generated');
        const same = generated.prompt.length === real.prompt.length
          && generated.prompt.every((m, i) => m.role === real.prompt[i].role && m.content === real.prompt[i].content);
        if (!same) this.fail('generated', 'prompt mismatch', 'the messages before its first assistant turn differ from those of "real"');
        return { prompt: real.prompt, response: real.response, rejected: generated.response, source };
      }
      case 'messages': {
        const chat = this.chatSplit('messages');
        return { prompt: chat.prompt, response: chat.response, source };
      }
      case 'prompt-response': {
        const prompt = this.string('prompt');
        const response = this.string('response');
        if (response === '') this.fail('response', 'empty response', 'empty');
        const rejected = this.optionalString('rejected');
        if (rejected === '') this.fail('rejected', 'empty response', 'empty');
        return rejected === undefined ? { prompt, response, source } : { prompt, response, rejected, source };
      }
    }
  }
}

/** Parses one JSON line's value as a record of the given format; throws DataError. */
export function parseRecord(value: unknown, format: DataFormat, source: SourceLine): Example {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DataError(source.file, source.line, null, 'not an object', `expected a JSON object, got ${typeName(value)}`);
  }
  return new RecordParser(value as Json, source).parse(format);
}

/** Reads a JSONL file (plain, or gzip when it ends in `.gz`) line by line into examples. */
export async function readExamples(file: string, options: ReadOptions = {}): Promise<ReadResult> {
  const { limit = Infinity, skipBadLines = false } = options;
  if (options.format !== undefined && !DATA_FORMATS.includes(options.format)) throw new Error(`readExamples: unknown format ${JSON.stringify(options.format)}; one of ${DATA_FORMATS.join(', ')}`);
  let format: DataFormat | null = options.format ?? null;
  const result: ReadResult = { examples: [], format, linesRead: 0, blankLines: 0, skipped: 0, skippedByReason: {}, skippedErrors: [] };
  if (limit <= 0) return result;
  for await (const { line, text } of readLines(file)) {
    result.linesRead = line;
    if (text.trim() === '') {
      result.blankLines++;
      continue;
    }
    const source = { file, line };
    try {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new DataError(file, line, null, 'invalid JSON', `invalid JSON: ${(e as Error).message}`);
      }
      if (format === null) {
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          format = detectFormat(value as Json);
          if (format === null) {
            throw new DataError(file, line, null, 'unknown format', `cannot tell the format from the keys ${JSON.stringify(Object.keys(value))}: expected chosen+rejected (hh), real (spin), messages, or prompt+response; or pass the format option`);
          }
        }
      }
      // A first line that is not an object leaves the format open; parseRecord reports it as such.
      result.examples.push(parseRecord(value, format ?? 'hh', source));
    } catch (e) {
      if (!(e instanceof DataError) || !skipBadLines || e.reason === 'unknown format') throw e;
      result.skipped++;
      result.skippedByReason[e.reason] = (result.skippedByReason[e.reason] ?? 0) + 1;
      result.skippedErrors.push(e);
    }
    if (result.examples.length >= limit) break;
  }
  result.format = format;
  return result;
}
