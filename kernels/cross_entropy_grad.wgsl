// The gradient pass of crossEntropy, for the variant that writes it: the count input (binding 2) and the dlogits
// output (binding 3). The variant without it (evaluation) includes cross_entropy_no_grad.wgsl instead, which
// declares neither.
@group(0) @binding(2) var<storage, read> count: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;

// Pass 2: dlogits_r[v] = (softmax(x_r)[v] - [v == t]) / count over the row at base, 0 on an ignored row.
fn writeGradient(base: u32, V: u32, lid: u32, rowMax: f32, rowSum: f32, t: i32, ignored: bool) {
  let c = count[0];
  let invCount = select(1.0 / f32(c), 0.0, c == 0u || ignored);
  let pScale = invCount / rowSum; // softmax[v] / count = exp(x - max) * pScale
  for (var v = lid; v < V; v += WG) {
    let hit = select(0.0, invCount, i32(v) == t);
    dlogits[base + v] = exp(logits[base + v] - rowMax) * pScale - hit;
  }
}
