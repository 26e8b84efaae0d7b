// out = x as IEEE half, round to nearest even, two per word (the even element in the low half): the f16 copies
// of mixed precision. The rounding is written out in integers rather than pack2x16float, whose result WGSL leaves
// indeterminate beyond f16's range: here overflow gives ±inf (as a torch cast does, so loss scaling sees it) and
// NaN stays NaN, bit for bit as kernels/dtype.ts f32ToF16.
override WG: u32 = 256u;

struct Params { n: u32 } // elements; the last word's high half is 0 when n is odd

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

fn halfBits(f: u32) -> u32 {
  let sign = (f >> 16u) & 0x8000u;
  let exponent = (f >> 23u) & 0xffu;
  var mantissa = f & 0x7fffffu;
  if (exponent == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u | (mantissa >> 13u), mantissa != 0u); }
  let e = i32(exponent) - 112; // rebias 127 -> 15
  if (e >= 0x1f) { return sign | 0x7c00u; }
  if (e > 0) {
    // normal: drop 13 mantissa bits; a carry out of the mantissa bumps the exponent (maybe to inf)
    let h = sign | (u32(e) << 10u) | (mantissa >> 13u);
    let rest = mantissa & 0x1fffu;
    return h + select(0u, 1u, rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u));
  }
  if (e < -10) { return sign; } // below half the smallest subnormal
  // subnormal: m · 2^-24 with m = mantissa24 >> (14 - e)
  mantissa |= 0x800000u;
  let shift = u32(14 - e);
  let h = mantissa >> shift;
  let rest = mantissa & ((1u << shift) - 1u);
  let halfway = 1u << (shift - 1u);
  return sign | (h + select(0u, 1u, rest > halfway || (rest == halfway && (h & 1u) == 1u)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let w = gid.x + gid.y * nwg.x * WG; // the word of elements 2w and 2w + 1
  let i = 2u * w;
  if (i >= params.n) { return; }
  let high = select(0u, halfBits(x[i + 1u]), i + 1u < params.n);
  out[w] = halfBits(x[i]) | (high << 16u);
}
