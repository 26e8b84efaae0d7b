// Where tests find their data: the fixtures copied into test/fixtures/ (so that a fresh clone passes), and the
// real data of ../shared/data (tokenizers, HH-RLHF, hh-byte-base), found beside the repository or through
// JUICE_SHARED_DATA; the tests that need it print a line and skip when it is absent.
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** A path under test/fixtures/. */
export function fixture(relative: string): string { return resolve(ROOT, 'test/fixtures', relative); }

/** ../shared/data beside the repository, or $JUICE_SHARED_DATA. */
export const SHARED_DATA = process.env.JUICE_SHARED_DATA ?? resolve(ROOT, '../shared/data');
