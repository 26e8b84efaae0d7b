// out = a (op) b for two operands of out's shape: element i of each, with none of binary.wgsl's index division
// and modulo (lavapipe has no vector integer divide). VALUE is f32, or vec4f where the count is a multiple of 4.
// binaryOp (OP) comes from binary_op.wgsl.
struct Params { n: u32, perThread: u32 } // n VALUEs

@group(0) @binding(0) var<storage, read> a: array<{{VALUE}}>;
@group(0) @binding(1) var<storage, read> b: array<{{VALUE}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{VALUE}}>;
@group(0) @binding(3) var<uniform> params: Params;

fn element(i: u32) { out[i] = binaryOp(a[i], b[i]); }
