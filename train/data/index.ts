// The data layer: readers, chat templates, encoding and batching. Host code only.
export * from './types.ts';
export { readLines } from './jsonl.ts';
export { HH_ASSISTANT, HH_HUMAN, detectFormat, parseRecord, readExamples, type ReadOptions, type ReadResult } from './formats.ts';
export { ChatTemplate, ChatTemplateError, exampleTexts, hhDialogue, type ExampleTexts } from './chat_template.ts';
export { encodeExample, encodeTexts, type EncodeOptions, type EncodedExample, type EncodedSequence, type TokenizerLike } from './encode.ts';
export { Rng, type RngState } from './rng.ts';
export { BatchSampler, DataLoader, collate, type Batch, type Cursor, type LoaderOptions, type PaddedBatch, type SampledBatch, type SamplerOptions } from './batching.ts';
