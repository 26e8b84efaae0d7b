// A Hugging Face tokenizer folder (tokenizer.json, optional tokenizer_config.json and
// special_tokens_map.json) through @huggingface/tokenizers.
//
// That library has no chat templates, so there is no applyChatTemplate here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export class TokenizerError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'TokenizerError';
  }
}

export const TOKENIZER_FILE = 'tokenizer.json';
const CONFIG_FILE = 'tokenizer_config.json';
const SPECIAL_TOKENS_FILE = 'special_tokens_map.json';

function readJsonObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TokenizerError(file, `cannot read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(file, `not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TokenizerError(file, 'must be a JSON object');
  return json as Record<string, unknown>;
}

/** A special token in tokenizer_config.json / special_tokens_map.json: a string or an AddedToken object. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

export class Tokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /** One more than the largest id of the vocabulary and the added tokens (transformers' len(tokenizer)). */
  readonly vocabSize: number;

  private constructor(private readonly hf: HfTokenizer, tokens: Record<'bos' | 'eos' | 'pad', string | null>) {
    const idOf = (t: string | null) => (t === null ? null : hf.token_to_id(t) ?? null);
    this.bosTokenId = idOf(tokens.bos);
    this.eosTokenId = idOf(tokens.eos);
    this.padTokenId = idOf(tokens.pad);
    let maxId = -1;
    for (const id of hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
  }

  /**
   * Loads `dir/tokenizer.json`; special tokens come from tokenizer_config.json, else
   * special_tokens_map.json (a token neither names has a null id).
   */
  static fromFolder(dir: string): Tokenizer {
    const file = path.join(dir, TOKENIZER_FILE);
    const json = readJsonObject(file);
    const configFile = path.join(dir, CONFIG_FILE);
    const config = fs.existsSync(configFile) ? readJsonObject(configFile) : {};
    const mapFile = path.join(dir, SPECIAL_TOKENS_FILE);
    const specialMap = fs.existsSync(mapFile) ? readJsonObject(mapFile) : {};
    const special = (key: string) => tokenContent(config[key]) ?? tokenContent(specialMap[key]);
    // The library defaults the clean-up to true, which breaks decode(encode(x)) == x for "a . b"; transformers 5 defaults it to false.
    const libraryConfig = { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces ?? false };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(json, libraryConfig);
    } catch (e) {
      throw new TokenizerError(file, `@huggingface/tokenizers cannot load it: ${(e as Error).message}`);
    }
    return new Tokenizer(hf, { bos: special('bos_token'), eos: special('eos_token'), pad: special('pad_token') });
  }

  /** Token ids; `addSpecialTokens` (default true) applies the post-processor, e.g. Mistral's leading <s>. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Text of the ids; like the Rust tokenizers, ids outside the vocabulary decode to nothing. */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const known = ids.filter((id) => this.hf.id_to_token(id) !== undefined);
    if (known.length === 0) return ''; // the library throws on an empty list
    return this.hf.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The token's id, or undefined when the vocabulary has no such token. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }
}
