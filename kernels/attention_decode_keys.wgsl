// The keys of one query row's chunk, for both decode kernels (attention_decode.wgsl, attention_decode_thread.wgsl):
// token t of head h, batch row b, at position t + positionOffset; its batch row's valid keys (keyRangeOf, from
// attention_key_range.wgsl or attention_no_key_range.wgsl); the visible ones [j0, j1) of chunk `chunk` (one query
// position: every key of its span is visible); kvRow, the first cache row of its kv head (rows of D values).
struct DecodeKeys { kvRow: u32, pos: u32, keys: vec2u, j0: u32, j1: u32 }

fn decodeKeys(b: u32, h: u32, t: u32, chunk: u32) -> DecodeKeys {
  let keys = keyRangeOf(b, params.filled);
  let pos = t + params.positionOffset;
  let span = visibleKeySpan(pos, pos, keys, params.causal, params.window);
  let chunk0 = chunk * CHUNK;
  return DecodeKeys((b * params.KVH + h / (params.H / params.KVH)) * params.S, pos, keys, max(span.x, chunk0), min(span.y, chunk0 + CHUNK));
}
