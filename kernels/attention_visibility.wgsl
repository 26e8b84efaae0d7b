// Which keys a query sees: the one statement of the attention mask, prepended to every attention kernel.
// A query at absolute position pos (query row t has pos = t + positionOffset; key j has position j)
// sees key j iff keyStart <= j < keyEnd (its batch row's valid keys, keyRangeOf(b, S): all S keys, or the
// keyRange input's entry for left or right padding), and,
// when causal, j <= pos, and, with a window W > 0 (which implies causal), pos - j < W (Mistral).

fn keyVisible(pos: u32, j: u32, keys: vec2u, causal: u32, window: u32) -> bool {
  if (j < keys.x || j >= keys.y) { return false; }
  if (causal == 0u) { return true; }
  return j <= pos && (window == 0u || pos - j < window);
}

// The keys [lo, hi) that some query with a position in [pos0, pos1] sees (lo == hi: none).
fn visibleKeySpan(pos0: u32, pos1: u32, keys: vec2u, causal: u32, window: u32) -> vec2u {
  var lo = keys.x;
  var hi = keys.y;
  if (causal != 0u) {
    hi = min(hi, pos1 + 1u);
    if (window != 0u && pos0 + 1u > window) { lo = max(lo, pos0 + 1u - window); }
  }
  return vec2u(lo, max(lo, hi));
}

// The query rows [lo, hi) of T (positions t + positionOffset) that see some key in [j0, j1] (ignoring padding).
fn seeingRowSpan(j0: u32, j1: u32, T: u32, positionOffset: u32, causal: u32, window: u32) -> vec2u {
  if (causal == 0u) { return vec2u(0u, T); }
  // Positions that see a key of [j0, j1]: [j0, j1 + window - 1], or [j0, ∞) without a window.
  let posLo = max(j0, positionOffset);
  var rowHi = T;
  if (window != 0u) { rowHi = min(T, select(0u, j1 + window - positionOffset, j1 + window > positionOffset)); }
  let rowLo = min(posLo - positionOffset, T);
  return vec2u(rowLo, max(rowLo, rowHi));
}
