// What generation needs from a model folder beside CausalLM.generate (the command is bin/commands/generate.ts).

/** The config's eos_token_id as a list. */
export function eosTokenIdsOf(eos: number | number[] | null): number[] {
  return eos === null ? [] : Array.isArray(eos) ? eos : [eos];
}
