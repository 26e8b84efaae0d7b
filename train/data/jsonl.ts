// Line-by-line reading of a text file, plain or gzip (by the `.gz` ending), without holding it whole, and without
// holding one unbounded line either: a line longer than maxLineChars is an error naming the file and the line.
import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import * as zlib from 'node:zlib';
import type { Readable } from 'node:stream';
import { DataError } from './types.ts';

/** The longest line read (16 Mi characters): far above any record of the supported formats, far below memory. */
export const MAX_LINE_CHARS = 16 * 2 ** 20;

/** Yields each line (without its `\n` or `\r\n`) with its 1-based number; stopping early closes the file. */
export async function* readLines(file: string, maxLineChars = MAX_LINE_CHARS): AsyncGenerator<{ line: number; text: string }> {
  const raw = fs.createReadStream(file);
  const stream: Readable = file.endsWith('.gz') ? raw.pipe(zlib.createGunzip()) : raw;
  // A read or gunzip error on `raw` is not forwarded by pipe(); forward it so the loop below throws.
  if (stream !== raw) raw.on('error', (e) => stream.destroy(e));
  const decoder = new StringDecoder('utf8'); // a character split across two chunks stays whole
  const tooLong = (line: number) => new DataError(file, line, null, 'line too long', `line longer than ${maxLineChars} characters`);
  const strip = (text: string) => (text.endsWith('\r') ? text.slice(0, -1) : text);
  let pending = '';
  let line = 0;
  try {
    for await (const chunk of stream) {
      pending += decoder.write(chunk as Buffer);
      let start = 0;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
        if (nl - start > maxLineChars) throw tooLong(line + 1);
        yield { line: ++line, text: strip(pending.slice(start, nl)) };
        start = nl + 1;
      }
      pending = pending.slice(start);
      if (pending.length > maxLineChars) throw tooLong(line + 1);
    }
    pending += decoder.end();
    if (pending.length > maxLineChars) throw tooLong(line + 1);
    if (pending.length > 0) yield { line: ++line, text: strip(pending) };
  } finally {
    stream.destroy();
    raw.destroy();
  }
}
