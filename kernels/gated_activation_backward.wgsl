// Backward of gated_activation.wgsl: forward was out = f(gate) · up, so dgate = dy · up · f'(gate), dup = dy · f(gate).
struct Params { n: u32, perThread: u32 }

@group(0) @binding(0) var<storage, read> gate: array<Value>;
@group(0) @binding(1) var<storage, read> up: array<Value>;
@group(0) @binding(2) var<storage, read> dy: array<Value>;
@group(0) @binding(3) var<storage, read_write> dgate: array<Value>;
@group(0) @binding(4) var<storage, read_write> dup: array<Value>;
@group(0) @binding(5) var<uniform> params: Params;

fn element(i: u32) {
  let g = gate[i];
  let d = dy[i];
  dgate[i] = d * up[i] * derivativeOf(g);
  dup[i] = d * activationOf(g);
}
