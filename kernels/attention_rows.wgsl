// What the rows kernels of attention share (attention_forward_rows.wgsl, attention_backward_dq_rows.wgsl and _dkdv_rows): 4×4 blocks
// as mat4x4f (one quad per column), the broadcast of the 8 lanes' quads, and the mask of a block of scores, read
// from the including kernel's `params` (causal, window) with attention_params.wgsl's NO_SCORE.

override D: u32; // head dim, a multiple of 4
override SLOTS: u32; // output quads per lane: ceil(D / 32), 1 or 2

// acc + m · x, as multiply-adds.
fn mulAdd(m: mat4x4f, x: vec4f, acc: vec4f) -> vec4f {
  return fma(m[3], vec4f(x.w), fma(m[2], vec4f(x.z), fma(m[1], vec4f(x.y), fma(m[0], vec4f(x.x), acc))));
}

// acc + m · x, column by column.
fn mulAdd4(m: mat4x4f, x: mat4x4f, acc: mat4x4f) -> mat4x4f {
  return mat4x4f(mulAdd(m, x[0], acc[0]), mulAdd(m, x[1], acc[1]), mulAdd(m, x[2], acc[2]), mulAdd(m, x[3], acc[3]));
}

// The 8 lanes' quads, lanes 0..3 as the columns of lo and 4..7 of hi (matmul_rows.wgsl's rowsOf).
fn lanesOf(mine: vec4f, lo: ptr<function, mat4x4f>, hi: ptr<function, mat4x4f>) {
  *lo = mat4x4f(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
  *hi = mat4x4f(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}

// Scores of one row (position pos) for the keys jv, NO_SCORE where not visible.
fn maskedRow(s: vec4f, pos: u32, jv: vec4u, keys: vec2u) -> vec4f {
  let c = params.causal;
  let w = params.window;
  return select(vec4f(NO_SCORE), s, vec4<bool>(keyVisible(pos, jv.x, keys, c, w), keyVisible(pos, jv.y, keys, c, w),
    keyVisible(pos, jv.z, keys, c, w), keyVisible(pos, jv.w, keys, c, w)));
}

// Scores of 4 rows (positions pos..pos+3, the columns of s) for the keys jv, NO_SCORE where not visible.
fn masked(s: mat4x4f, pos: u32, jv: vec4u, keys: vec2u) -> mat4x4f {
  return mat4x4f(maskedRow(s[0], pos, jv, keys), maskedRow(s[1], pos + 1u, jv, keys), maskedRow(s[2], pos + 2u, jv, keys), maskedRow(s[3], pos + 3u, jv, keys));
}

