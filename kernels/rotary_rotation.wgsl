// The rotation shared by rotary.wgsl and qkv_rotary.wgsl (rotate-half: pairs (i, i + half) of a head), so that
// both compute the same angles and the same rotated values bit for bit. The including kernel declares invFreq.

// π/2 = P1 + P2 + P3: P1 and P2 carry 8 significant bits, so k·P1 and k·P2 are exact in f32 for k < 2^16, and the
// reduction a - k·P1 - k·P2 - k·P3 (Cody-Waite) loses nothing for |a| < 2^16·π/2 ≈ 102943; P3 holds the next 24 bits.
const P1: f32 = 1.5703125;
const P2: f32 = 4.825592041015625e-4;
const P3: f32 = 1.26759085e-6;
const FRAC_2_PI: f32 = 0.636619772;

// (sin a, cos a) to ~1e-7 absolute for |a| < 102943 (WGSL's sin and cos promise 2^-11 only, on [-π, π]).
// Reduce to r ∈ [-π/4, π/4] and quadrant k, then Taylor series: the first omitted terms, r^11/11! and r^12/12!,
// are below 3e-9 there.
fn sinCos(a: f32) -> vec2f {
  let k = round(a * FRAC_2_PI);
  let r = ((a - k * P1) - k * P2) - k * P3;
  let r2 = r * r;
  let s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
  switch (i32(k) & 3) {
    case 0: { return vec2f(s, c); }
    case 1: { return vec2f(c, -s); }
    case 2: { return vec2f(-s, -c); }
    default: { return vec2f(-c, s); }
  }
}

// Pair `pair`'s angle at position pos: f32(pos) · invFreq in f32, as transformers forms its frequencies, so that
// the angles match it bit for bit.
fn rotaryAngle(pos: i32, pair: u32) -> f32 { return f32(pos) * invFreq[pair]; }

// (x1, x2) rotated by the angle whose (sin, cos) is sc: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin.
fn rotatePair(x1: f32, x2: f32, sc: vec2f) -> vec2f { return vec2f(x1 * sc.y - x2 * sc.x, x2 * sc.y + x1 * sc.x); }
