// Quads (4 consecutive elements) of matmul_rows.wgsl's operands as stored: an f32 quad is one vec4 of words, a
// 16-bit quad (f16, bf16, FORMAT_CONSTANT) one vec2; each operand's array takes the type of its format (the
// placeholders in matmul_rows.wgsl pick Quad32 or Quad16 and the function of the same width).
alias Quad32 = vec4<u32>;
alias Quad16 = vec2<u32>;

fn quad32(w: Quad32, format: u32) -> vec4f { return bitcast<vec4f>(w); }
fn quad16(w: Quad16, format: u32) -> vec4f { return vec4f(widenWord(w.x, format), widenWord(w.y, format)); }
