// The operation of binary.wgsl and binary_same_shape.wgsl on one VALUE (f32, or vec4f: componentwise).
// OP: 0 add, 1 subtract, 2 multiply, 3 divide.
override OP: u32 = 0u;

fn binaryOp(x: {{VALUE}}, y: {{VALUE}}) -> {{VALUE}} {
  switch OP {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    default: { return x / y; }
  }
}
