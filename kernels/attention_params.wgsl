// What the attention kernels' uniform holds (ATTENTION_PARAMS in attention_forward.ts, in this order), and the two
// values they write for masked scores and rows that see no key; included by the forward and backward kernels.

struct Params {
  T: u32, S: u32, H: u32, KVH: u32,
  scale: f32,
  causal: u32, window: u32, positionOffset: u32,
}

// Below any real score and finite: WGSL arithmetic may assume that no infinity occurs.
const NO_SCORE = -1.0e30;
// -inf as bits: the lse of a row that sees no key, written without infinite arithmetic.
const NEG_INF_BITS = 0xff800000u;
