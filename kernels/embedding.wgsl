// out[t, c] = weight[ids[t] - first, c] for the ids in this window of the table, rows [first, first + vocab):
// one thread per output element. The table may be a window of a larger one (bound window by window when it
// exceeds one binding); the launch with zeroOthers set writes 0 where an id is outside its window, so that ids
// outside the whole table give 0 and later windows overwrite their own rows.
// The table is stored as f32 or as 16-bit floats (f16, bf16: two per 32-bit word, the even element in the low
// half, e.g. a frozen model's table); out is f32.
override WEIGHT_FORMAT: u32 = 0u; // F32, F16 or BF16

struct Params { n: u32, perThread: u32, cols: u32, vocab: u32, first: u32, zeroOthers: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>; // words of WEIGHT_FORMAT values
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn loadWeight(i: u32) -> f32 { return widen(weight[wordOf(i, WEIGHT_FORMAT)], i, WEIGHT_FORMAT); }

fn element(i: u32) {
  let id = ids[i / params.cols];
  let row = u32(id) - params.first; // wraps around for ids below the window
  if (id >= 0 && u32(id) >= params.first && row < params.vocab) { out[i] = loadWeight(row * params.cols + i % params.cols); }
  else if (params.zeroOthers != 0u) { out[i] = 0.0; }
}
