// The gather ids (engine/ops/shape.ts gatherRows) that move one part's rows of a KV cache [B, H, srcColumns, D]
// into a new cache [rows, H, columns, D] (models/self_attention.ts KVCache.joined), built here from one (source row,
// its padding) pair a moved row instead of on the host, id by id. New row at + r takes source row sources[r]: its
// filled columns [pad, srcFilled) go, right-aligned, to [length - (srcFilled - pad), length). Id i names new row
// (b, h, column) = (i / columns / H, i / columns % H, i % columns): the source's cache row of D values, or -1 for none
// (another part's rows, padding, room).

struct Params { n: u32, perThread: u32, heads: u32, columns: u32, length: u32, srcColumns: u32, srcFilled: u32, at: u32, count: u32 }

@group(0) @binding(0) var<storage, read> sources: array<vec2i>; // (source row, its padding) of new rows at, at + 1, ...
@group(0) @binding(1) var<storage, read_write> ids: array<i32>;
@group(0) @binding(2) var<uniform> params: Params;

fn element(i: u32) {
  let column = i % params.columns;
  let bh = i / params.columns;
  let r = bh / params.heads - params.at; // wraps around for rows before the part's
  var id = -1;
  if (r < params.count) {
    let source = sources[r];
    let pad = u32(source.y);
    let start = params.length - (params.srcFilled - pad);
    if (column >= start && column < params.length) {
      id = i32((u32(source.x) * params.heads + bh % params.heads) * params.srcColumns + pad + column - start);
    }
  }
  ids[i] = id;
}
