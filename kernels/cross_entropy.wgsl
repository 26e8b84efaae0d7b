// Fused softmax cross-entropy over rows of V logits: one workgroup per row.
//   loss_r = logsumexp(x_r) - x_r[t_r]            (0 where t_r == ignoreIndex)
//   dlogits_r[v] = (softmax(x_r)[v] - [v == t_r]) / count   (0 on ignored rows; count from the count kernel)
// Pass 1 is rowMaxSum (row_logsumexp.wgsl), which reads the row once for the logsumexp; pass 2, writeGradient
// (cross_entropy_grad.wgsl; nothing in the evaluation variant, cross_entropy_no_grad.wgsl), reads it again to write
// the gradient.
// A target outside [0, V) that is not ignoreIndex gives a NaN row loss: torch raises there, we cannot.
override WG: u32 = 256u;

struct Params { rows: u32, V: u32, ignoreIndex: i32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
// bindings 2 (count) and 3 (dlogits): declared by cross_entropy_grad.wgsl (the evaluation variant leaves them out)
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let V = params.V;
  let base = row * V;

  let maxSum = rowMaxSum(base, V, lid); // row_logsumexp.wgsl
  let rowMax = maxSum.x;
  let rowSum = maxSum.y;
  let t = targets[row];
  let ignored = t == params.ignoreIndex;
  let inRange = t >= 0 && u32(t) < V;

  writeGradient(base, V, lid, rowMax, rowSum, t, ignored);
  if (lid == 0u) {
    var l = 0.0;
    if (!ignored) {
      var nanBits = 0x7fc00000u; // a runtime NaN: a constant one is rejected by WGSL
      l = select(bitcast<f32>(nanBits), rowMax + log(rowSum) - logits[base + select(0u, u32(t), inRange)], inRange);
    }
    rowLoss[row] = l;
  }
}
