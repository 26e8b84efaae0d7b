// Activation functions and their derivatives, shared by the activation kernels (activation.ts prepends this file).
// FN selects the function: 0 GELU (exact, through the normal CDF), 1 SiLU, 2 ReLU.
override FN: u32 = 0u;

const FRAC_1_SQRT_2: f32 = 0.70710678118654752;
const FRAC_1_SQRT_2PI: f32 = 0.39894228040143268;

// Φ(x), the standard normal CDF, given e = exp(-x²/2). Built on the tail Q = erfc(t)/2 with t = |x|/√2 so that
// GELU's left tail keeps its relative accuracy (1 + erf(x/√2) would cancel). erfc(t) = exp(-t²) · g(q) / (1 + 2t)
// with q = (t - 2) / (t + 2) mapping [0, ∞) onto [-1, 1); g = (1 + 2t)·exp(t²)·erfc(t) is smooth in q and within
// [1, 1.13]. Its polynomial is a relative least-squares fit of degree 10 on Chebyshev nodes of q ∈ [-1, 2/3]
// (t ≤ 10: beyond, erfc underflows f32), relative error 1e-8 in float64 and 1.5e-7 evaluated in f32. The
// exponent comes from the exact x, not from the rounded t.
fn normalCdf(x: f32, e: f32) -> f32 {
  let t = min(abs(x) * FRAC_1_SQRT_2, 10.0);
  let q = (t - 2.0) / (t + 2.0);
  var g = 2.20343245e-5;
  g = g * q - 3.72209324e-4;
  g = g * q - 1.25158951e-3;
  g = g * q + 1.28103839e-3;
  g = g * q + 8.63918848e-3;
  g = g * q - 8.04727897e-3;
  g = g * q - 5.42055257e-2;
  g = g * q + 1.64053530e-1;
  g = g * q - 1.66031331e-1;
  g = g * q - 9.27639082e-2;
  g = g * q + 1.27697837;
  let tail = 0.5 * e * g / (1.0 + 2.0 * t);
  return select(1.0 - tail, tail, x < 0.0);
}

// (σ(x), σ(-x)) from exp(-|x|), which never overflows: 1 - σ(x) is not formed by cancellation.
fn sigmoidPair(x: f32) -> vec2f {
  let e = exp(-abs(x));
  let r = 1.0 / (1.0 + e);
  return select(vec2f(e * r, r), vec2f(r, e * r), x >= 0.0);
}

fn activation(x: f32) -> f32 {
  if (FN == 0u) { return x * normalCdf(x, exp(-0.5 * x * x)); }
  if (FN == 2u) { return max(x, 0.0); }
  return x * sigmoidPair(x).x;
}

// GELU: d/dx x·Φ(x) = Φ(x) + x·φ(x). SiLU: d/dx x·σ(x) = σ(x)·(1 + x·σ(-x)). ReLU: [x > 0].
fn activationDerivative(x: f32) -> f32 {
  if (FN == 0u) {
    let e = exp(-0.5 * x * x);
    return normalCdf(x, e) + x * FRAC_1_SQRT_2PI * e;
  }
  if (FN == 2u) { return select(0.0, 1.0, x > 0.0); }
  let s = sigmoidPair(x);
  return s.x * (1.0 + x * s.y);
}
