// Log-probability of each token given the tokens before it, from next-token logits: one workgroup per token (b, t).
//   logp[b, t] = x[b, t - 1, ids[b, t]] - lse[b, t],   lse[b, t] = logsumexp(x[b, t - 1, :]),   for t >= 1;
//   logp[b, 0] = lse[b, 0] = 0: the first token has no prediction.
// The logits may come in vocabulary chunks (the LM head applied chunk by chunk: engine/ops/lm_head.ts): `logits`
// holds columns [first, first + V) of a vocabulary of `vocab`. Each launch merges its chunk's (max, sum of exp),
// from rowMaxSum (row_logsumexp.wgsl, one read of the row), and the target's logit when it falls in the chunk with
// the earlier chunks' (token_logprobs_state.wgsl); the last chunk's launch writes logp and lse. One chunk (first = 0,
// V = vocab) is the whole computation, in the variant without the state (token_logprobs_no_state.wgsl).
// An id outside [0, vocab) gives NaN.
override WG: u32 = 256u;

struct Params { tokens: u32, T: u32, V: u32, first: u32, vocab: u32, firstChunk: u32, lastChunk: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
// binding 2: the per-token state between chunks (token_logprobs_state.wgsl), absent for one chunk
@group(0) @binding(3) var<storage, read_write> logp: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let token = wid.x + wid.y * nwg.x;
  if (token >= params.tokens) { return; }
  if (token % params.T == 0u) {
    if (lid == 0u && params.lastChunk != 0u) { logp[token] = 0.0; lse[token] = 0.0; }
    return;
  }
  let V = params.V;
  let base = (token - 1u) * V; // the logits of the previous position predict this token

  let chunk = rowMaxSum(base, V, lid); // row_logsumexp.wgsl
  if (lid == 0u) {
    let id = ids[token];
    let col = u32(id) - params.first; // wraps around for ids below the chunk
    let inChunk = id >= 0 && u32(id) >= params.first && col < V;
    // (max, sum of exp, target's logit) of the chunks so far
    let merged = mergedState(token, vec3f(chunk, select(0.0, logits[base + select(0u, col, inChunk)], inChunk)), inChunk);
    if (params.lastChunk != 0u) {
      let rowLse = merged.x + log(merged.y);
      var nanBits = 0x7fc00000u; // a runtime NaN: a constant one is rejected by WGSL
      logp[token] = select(bitcast<f32>(nanBits), merged.z - rowLse, id >= 0 && u32(id) < params.vocab);
      lse[token] = rowLse;
    } else {
      storeState(token, merged);
    }
  }
}
