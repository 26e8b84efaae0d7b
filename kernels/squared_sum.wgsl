// Partial sums of one tensor for the global gradient norm: workgroup w writes
//   out[outOffset + w] = sum of x[i]^2 (SQUARE) or of x[i] (not SQUARE) over its chunk [w * chunk, min(n, (w + 1) * chunk)).
// Thread t adds x[begin + t], x[begin + t + WG], ... in that order, then workgroupSum adds the threads' sums in a
// fixed tree: the result depends only on n, chunk and WG, never on scheduling (no atomics). The final pass runs
// one workgroup with SQUARE false over all the partials.
override WG: u32 = 256u;
override SQUARE: bool = true;

alias Partial = f32; // workgroupSum (workgroup_sum.wgsl) sums these

struct Params { n: u32, chunk: u32, outOffset: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let begin = wid.x * params.chunk;
  let end = min(params.n, begin + params.chunk);
  var s = 0.0;
  for (var i = begin + lid; i < end; i += WG) {
    let v = x[i];
    s += select(v, v * v, SQUARE);
  }
  let total = workgroupSum(s, lid);
  if (lid == 0u) { out[params.outOffset + wid.x] = total; }
}
