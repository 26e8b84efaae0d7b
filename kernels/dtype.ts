// The one dtype vocabulary of juice, at the bottom layer (kernels need it for formats and byte counts).
// f16 and bf16 are storage formats: two per 32-bit word, widened to f32 by the kernels that read them; math is f32.
// File formats (safetensors' 'F32', 'BF16', ...) are mapped to these names at the file boundary only.

export type DType = 'f32' | 'i32' | 'u32' | 'f16' | 'bf16';
/** The storages a float operand may have. */
export type FloatDType = 'f32' | 'f16' | 'bf16';
/** The 16-bit float storages. */
export type HalfDType = 'f16' | 'bf16';

/** 16-bit floats on the host: the raw bits and which format they are. */
export interface HalfBits { dtype: HalfDType; bits: Uint16Array }

export function bytesPerElement(dtype: DType): number { return dtype === 'f16' || dtype === 'bf16' ? 2 : 4; }

/** Bytes of numel elements, rounded up to whole 32-bit words (the unit WGSL storage arrays index). */
export function storageBytes(numel: number, dtype: DType): number { return Math.ceil((numel * bytesPerElement(dtype)) / 4) * 4; }

export function isFloatDType(dtype: string): dtype is FloatDType { return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16'; }

export function isHalfDType(dtype: string): dtype is HalfDType { return dtype === 'f16' || dtype === 'bf16'; }

/** The format constants of kernels/float_storage.wgsl (F32, F16, BF16): the values of the *_FORMAT overrides. */
export const FORMAT_CONSTANT: Record<FloatDType, number> = { f32: 0, f16: 1, bf16: 2 };

// 16-bit float conversions. Pass `out` to reuse a buffer (e.g. a mapped GPU staging range).

let F16_TABLE: Float32Array | undefined;

/** 65536-entry table: half bits -> float32 value (256 KiB, built on first use). */
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exact in float32
      table[h] = (sign ? -mant : mant) * 2 ** -24;
      if (mant === 0) bits[h] = sign >>> 0; // keep -0
    } else if (exp === 0x1f) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  return (F16_TABLE = table);
}

/** IEEE half bits -> float32 (exact). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const table = f16Table();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** bfloat16 bits -> float32 (exact: bf16 is the top half of a float32). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** float32 -> IEEE half bits, round to nearest even; overflow -> ±inf, NaN stays a quiet NaN. */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u32[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) {
      h = sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
    } else {
      const e = exp - 112; // rebias 127 -> 15
      if (e >= 0x1f) {
        h = sign | 0x7c00;
      } else if (e > 0) {
        // normal: drop 13 mantissa bits; a carry out of the mantissa bumps the exponent (maybe to inf)
        h = sign | (e << 10) | (mant >>> 13);
        const rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
      } else if (e >= -10) {
        // half subnormal: value = m * 2^-24 with m = mant24 >> (14 - e)
        mant |= 0x800000;
        const shift = 14 - e;
        h = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && (h & 1))) h++;
        h |= sign;
      } else {
        h = sign; // below half of the smallest subnormal: rounds to ±0
      }
    }
    out[i] = h;
  }
  return out;
}

/** float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function f32ToBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u32[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40; // NaN: truncating could turn it into inf
    } else {
      // cannot exceed 2^32: the largest non-NaN input is 0xff800000
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}
