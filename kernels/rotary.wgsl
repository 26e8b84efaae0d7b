// Rotary position embedding, rotate-half convention (GPT-NeoX, Llama, Mistral), on x [B, H, T, D] (heads-major).
// The first 2·half dims of each head rotate in pairs (i, i + half) by angle = pos · invFreq[i], pos = t + offset,
// less batch row b's leftPadding[b] in the padding variant (so that each row counts from its first real token):
//   x1' = x1 cos - x2 sin,  x2' = x2 cos + x1 sin;  dims from 2·half on pass through.
// INVERSE rotates by -angle: the backward, since the rotation is orthogonal.
// One thread per pair and one per passed-through dim: `lanes` = D - half threads per row.
override WG: u32 = 256u;
override INVERSE: bool = false;

// rowsPerBatch = H·T rows per batch row (read by the padding variant).
struct Params { n: u32, lanes: u32, headDim: u32, half: u32, seqLen: u32, positionOffset: u32, rowsPerBatch: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> invFreq: array<f32>;
// binding 2: leftPadding [B] i32, declared by rotary_left_padding.wgsl (the variant without padding leaves it out)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

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

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let row = i / params.lanes;
  let lane = i % params.lanes;
  let base = row * params.headDim;
  let half = params.half;
  if (lane >= half) {
    out[base + lane + half] = x[base + lane + half];
    return;
  }
  let pos = paddedPosition(i32(row % params.seqLen + params.positionOffset), row); // rotary_left_padding.wgsl or rotary_no_left_padding.wgsl
  // f32(pos) · invFreq in f32, as transformers forms its frequencies, so that the angles match it bit for bit.
  let sc = sinCos(f32(pos) * invFreq[lane]);
  let sine = select(sc.x, -sc.x, INVERSE);
  let x1 = x[base + lane];
  let x2 = x[base + lane + half];
  out[base + lane] = x1 * sc.y - x2 * sine;
  out[base + lane + half] = x2 * sc.y + x1 * sine;
}
