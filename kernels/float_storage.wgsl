// Floats stored as f32 or 16 bits (f16, bf16: two per 32-bit word, the even element in the low half), read as
// f32. Prepended to kernels that declare their operands array<u32>; the format is an override constant in
// each call, so the compiler keeps one branch and f32 loads cost what they cost with array<f32>.
const F32 = 0u;
const F16 = 1u;
const BF16 = 2u;

// Element i, given the word that holds it (bf16 is a truncated f32).
fn widen(word: u32, i: u32, format: u32) -> f32 {
  if (format == F16) { return unpack2x16float(word)[i & 1u]; }
  if (format == BF16) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u)); }
  return bitcast<f32>(word);
}

// Both 16-bit values of a word, low half first.
fn widenWord(word: u32, format: u32) -> vec2f {
  if (format == F16) { return unpack2x16float(word); }
  return vec2f(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

// The word that holds element i.
fn wordOf(i: u32, format: u32) -> u32 { return select(i / 2u, i, format == F32); }
