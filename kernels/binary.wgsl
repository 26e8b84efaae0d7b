// out = a (op) b with broadcasting over up to 4 dims: strides of 0 repeat an operand along a dim.
// binaryOp (OP) comes from binary_op.wgsl; operands of one shape take binary_same_shape.wgsl instead.
struct Params {
  n: u32,
  perThread: u32,
  d1: u32, d2: u32, d3: u32, // out dims 1..3 (dim 0 is implied by n)
  sa0: u32, sa1: u32, sa2: u32, sa3: u32,
  sb0: u32, sb1: u32, sb2: u32, sb3: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn element(i: u32) {
  let i3 = i % params.d3;
  let r3 = i / params.d3;
  let i2 = r3 % params.d2;
  let r2 = r3 / params.d2;
  let i1 = r2 % params.d1;
  let i0 = r2 / params.d1;
  let x = a[i0 * params.sa0 + i1 * params.sa1 + i2 * params.sa2 + i3 * params.sa3];
  let y = b[i0 * params.sb0 + i1 * params.sb1 + i2 * params.sb2 + i3 * params.sb3];
  out[i] = binaryOp(x, y);
}
