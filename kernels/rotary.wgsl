// Rotary position embedding, rotate-half convention (GPT-NeoX, Llama, Mistral), on x [B, H, T, D] (heads-major).
// The first 2·half dims of each head rotate in pairs (i, i + half) by angle = pos · invFreq[i], pos = t + offset,
// less batch row b's leftPadding[b] in the padding variant (so that each row counts from its first real token):
//   x1' = x1 cos - x2 sin,  x2' = x2 cos + x1 sin;  dims from 2·half on pass through.
// INVERSE rotates by -angle: the backward, since the rotation is orthogonal.
// One thread per pair and one per passed-through dim: `lanes` = D - half threads per row.
override INVERSE: bool = false;

// rowsPerBatch = H·T rows per batch row: row / rowsPerBatch is its batch row.
struct Params { n: u32, perThread: u32, lanes: u32, headDim: u32, half: u32, seqLen: u32, positionOffset: u32, rowsPerBatch: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> invFreq: array<f32>;
// binding 2: leftPadding [B] i32, declared by rotary_left_padding.wgsl (the variant without padding leaves it out)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

fn element(i: u32) {
  let row = i / params.lanes;
  let lane = i % params.lanes;
  let base = row * params.headDim;
  let half = params.half;
  if (lane >= half) {
    out[base + lane + half] = x[base + lane + half];
    return;
  }
  // rotary_left_padding.wgsl or rotary_no_left_padding.wgsl; sinCos, rotaryAngle and rotatePair: rotary_rotation.wgsl.
  let pos = paddedPosition(i32(row % params.seqLen + params.positionOffset), row / params.rowsPerBatch);
  let sc = sinCos(rotaryAngle(pos, lane));
  let y = rotatePair(x[base + lane], x[base + lane + half], vec2f(select(sc.x, -sc.x, INVERSE), sc.y));
  out[base + lane] = y.x;
  out[base + lane + half] = y.y;
}
