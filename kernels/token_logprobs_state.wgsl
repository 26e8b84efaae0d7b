// The per-token state of token_logprobs.wgsl between vocabulary chunks (binding 2), for the variant over several
// chunks: (running max, running sum of exp, the target's logit). The one-chunk variant includes
// token_logprobs_no_state.wgsl instead, which declares no binding.
@group(0) @binding(2) var<storage, read_write> state: array<f32>;

// This chunk's (max, sum, target logit) merged with the earlier chunks' (none before the first chunk).
fn mergedState(token: u32, chunk: vec3f, inChunk: bool) -> vec3f {
  if (params.firstChunk != 0u) { return chunk; }
  let m0 = state[3u * token];
  let m = max(m0, chunk.x);
  let s = state[3u * token + 1u] * exp(m0 - m) + chunk.y * exp(chunk.x - m);
  return vec3f(m, s, select(state[3u * token + 2u], chunk.z, inChunk));
}

fn storeState(token: u32, v: vec3f) {
  state[3u * token] = v.x;
  state[3u * token + 1u] = v.y;
  state[3u * token + 2u] = v.z;
}
