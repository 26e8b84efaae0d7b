// Chat templates: the `chat_template` of tokenizer_config.json rendered with @huggingface/jinja
// (the engine transformers.js uses), with the special tokens passed as transformers passes them.
//
// An example's texts: the prompt is template(prompt messages, add_generation_prompt=true); the
// response is template(prompt messages + the assistant turn) with that prompt text taken off its
// front, which requires the template to render the prompt as a prefix of the whole conversation.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';
import { HH_ASSISTANT, HH_HUMAN } from './formats.ts';
import type { ChatMessage, Example } from './types.ts';

export class ChatTemplateError extends Error {
  constructor(readonly where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = 'ChatTemplateError';
  }
}

/** The keys of transformers' special_tokens_map, which apply_chat_template passes to the template. */
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

export class ChatTemplate {
  private readonly template: Template;

  /**
   * `specialTokens` are the template's variables bos_token, eos_token, ... (strings); `where` names the
   * template's origin in error messages.
   */
  constructor(readonly source: string, readonly specialTokens: Readonly<Record<string, string>> = {}, readonly where = 'chat_template') {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(where, `cannot parse the template: ${(e as Error).message}`);
    }
  }

  /**
   * The template of `tokenizer_config.json` (the file, or the folder holding it), or null when it
   * has none. A list of named templates picks the one named "default".
   */
  static fromTokenizerConfig(fileOrDir: string): ChatTemplate | null {
    const file = fs.existsSync(fileOrDir) && fs.statSync(fileOrDir).isDirectory() ? path.join(fileOrDir, 'tokenizer_config.json') : fileOrDir;
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ChatTemplateError(file, `cannot read it as JSON: ${(e as Error).message}`);
    }
    let source = config.chat_template;
    if (source === undefined || source === null) return null;
    if (Array.isArray(source)) {
      const named = source.find((t: unknown) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined;
      if (named === undefined) throw new ChatTemplateError(file, 'chat_template is a list without a template named "default"');
      source = named.template;
    }
    if (typeof source !== 'string') throw new ChatTemplateError(file, 'chat_template must be a string or a list of {name, template}');
    const specialTokens: Record<string, string> = {};
    for (const key of SPECIAL_TOKEN_KEYS) {
      const token = tokenContent(config[key]);
      if (token !== null) specialTokens[key] = token;
    }
    return new ChatTemplate(source, specialTokens, `${file}: chat_template`);
  }

  render(messages: readonly ChatMessage[], options: { addGenerationPrompt: boolean }): string {
    try {
      return this.template.render({ ...this.specialTokens, messages, add_generation_prompt: options.addGenerationPrompt });
    } catch (e) {
      throw new ChatTemplateError(this.where, `rendering failed: ${(e as Error).message}`);
    }
  }

  /**
   * The text of the assistant turn `response` after `prompt`: the whole conversation rendered, less
   * the prompt rendered with the generation prompt. When the template writes eos_token after the
   * turn (Zephyr, Llama 2, Mistral-Instruct do), whatever follows that last eos_token (Zephyr's
   * newline) is dropped: a model stops at EOS and never produces it.
   */
  responseText(prompt: readonly ChatMessage[], response: string, promptText = this.render(prompt, { addGenerationPrompt: true })): string {
    const full = this.render([...prompt, { role: 'assistant', content: response }], { addGenerationPrompt: false });
    if (!full.startsWith(promptText)) {
      let i = 0;
      while (i < promptText.length && promptText[i] === full[i]) i++;
      throw new ChatTemplateError(this.where, `the prompt rendered with add_generation_prompt is not a prefix of the conversation with the assistant turn: they differ from character ${i}: ${JSON.stringify(promptText.slice(i, i + 40))} vs ${JSON.stringify(full.slice(i, i + 40))}`);
    }
    let text = full.slice(promptText.length);
    const eos = this.specialTokens.eos_token;
    if (eos !== undefined && eos !== '' && text.trimEnd().endsWith(eos)) text = text.trimEnd();
    return text;
  }
}

/**
 * Chat messages as an HH-RLHF dialogue, for models without a chat template: a leading system
 * message's content as written, then "\n\nHuman: ..." and "\n\nAssistant: ..." turns, ending with
 * "\n\nAssistant:" like the HH prompts do. The response is then " " + content, as HH responses start.
 */
export function hhDialogue(messages: readonly ChatMessage[]): string {
  let text = '';
  messages.forEach((m, i) => {
    if (m.role === 'system' && i === 0) text += m.content;
    else if (m.role === 'user') text += `${HH_HUMAN} ${m.content}`;
    else if (m.role === 'assistant') text += `${HH_ASSISTANT} ${m.content}`;
    else throw new ChatTemplateError('hhDialogue', `message ${i} has role ${JSON.stringify(m.role)}: without a chat template only a leading "system", then "user" and "assistant" are known`);
  });
  return text + HH_ASSISTANT;
}

export interface ExampleTexts {
  prompt: string;
  response: string;
  rejected?: string;
}

/**
 * The prompt and response texts to tokenise. Text prompts (HH, plain files) are used as written,
 * with or without a template; chat prompts go through the template, or without one through hhDialogue.
 */
export function exampleTexts(example: Example, template: ChatTemplate | null): ExampleTexts {
  const { prompt, response, rejected } = example;
  let texts: ExampleTexts;
  if (typeof prompt === 'string') texts = { prompt, response, rejected };
  else if (template === null) texts = { prompt: hhDialogue(prompt), response: ` ${response}`, rejected: rejected === undefined ? undefined : ` ${rejected}` };
  else {
    const promptText = template.render(prompt, { addGenerationPrompt: true });
    texts = {
      prompt: promptText,
      response: template.responseText(prompt, response, promptText),
      rejected: rejected === undefined ? undefined : template.responseText(prompt, rejected, promptText),
    };
  }
  if (texts.rejected === undefined) delete texts.rejected;
  return texts;
}
