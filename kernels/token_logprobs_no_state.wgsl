// The one-chunk variant of token_logprobs.wgsl: the whole vocabulary in one launch, no state between chunks
// (binding 2 left out; see token_logprobs_state.wgsl).
fn mergedState(token: u32, chunk: vec3f, inChunk: bool) -> vec3f { return chunk; }

fn storeState(token: u32, v: vec3f) {}
