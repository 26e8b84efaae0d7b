// Backward of token_logprobs.wgsl: forward was logp[b, t] = x[b, t - 1, ids[b, t]] - logsumexp(x[b, t - 1, :]),
// so dx[b, s, v] = dlogp[b, s + 1] · ([v == ids[b, s + 1]] - softmax(x[b, s, :])[v]) for s < T - 1, and 0 at
// s = T - 1 (the last position predicts no token). One thread per logit; softmax from the saved lse. The logits
// may be a vocabulary chunk: columns [first, first + V).

struct Params { n: u32, perThread: u32, T: u32, V: u32, first: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> dlogp: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

fn element(i: u32) {
  let row = i / params.V;
  if (row % params.T == params.T - 1u) { dlogits[i] = 0.0; return; }
  let next = row + 1u;
  let hit = select(0.0, 1.0, i32(i % params.V + params.first) == ids[next]);
  dlogits[i] = dlogp[next] * (hit - exp(logits[i] - lse[next]));
}
