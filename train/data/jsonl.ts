// Line-by-line reading of a text file, plain or gzip (by the `.gz` ending), without holding it whole.
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import * as zlib from 'node:zlib';
import type { Readable } from 'node:stream';

/** Yields each line (without its `\n` or `\r\n`) with its 1-based number; stopping early closes the file. */
export async function* readLines(file: string): AsyncGenerator<{ line: number; text: string }> {
  const raw = fs.createReadStream(file);
  const stream: Readable = file.endsWith('.gz') ? raw.pipe(zlib.createGunzip()) : raw;
  // A read or gunzip error on `raw` is not forwarded by pipe(); forward it so the loop below throws.
  if (stream !== raw) raw.on('error', (e) => stream.destroy(e));
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of lines) yield { line: ++line, text };
  } finally {
    lines.close();
    stream.destroy();
    raw.destroy();
  }
}
