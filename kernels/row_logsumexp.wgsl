// The (max, sum of exp(x - max)) of logits[base .. base + V) over a workgroup: each thread keeps a running
// pair, so the row is read once, then a tree merges the pairs. Prepended to kernels that declare a
// `logits` storage array and `override WG` (a power of two).
const LOWEST = -0x1.fffffep+127f; // f32's lowest finite value: exp(LOWEST - x) is 0 without an infinity

var<workgroup> wgMax: array<f32, WG>;
var<workgroup> wgSum: array<f32, WG>;

// Returns vec2f(max, sum) to every invocation; logsumexp = max + log(sum).
fn rowMaxSum(base: u32, V: u32, lid: u32) -> vec2f {
  var m = LOWEST;
  var s = 0.0;
  for (var v = lid; v < V; v += WG) {
    let x = logits[base + v];
    if (x > m) { s = s * exp(m - x) + 1.0; m = x; } else { s += exp(x - m); }
  }
  wgMax[lid] = m;
  wgSum[lid] = s;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) {
      let m1 = wgMax[lid];
      let m2 = wgMax[lid + stride];
      let mx = max(m1, m2);
      wgSum[lid] = wgSum[lid] * exp(m1 - mx) + wgSum[lid + stride] * exp(m2 - mx);
      wgMax[lid] = mx;
    }
  }
  workgroupBarrier();
  return vec2f(wgMax[0], wgSum[0]);
}
