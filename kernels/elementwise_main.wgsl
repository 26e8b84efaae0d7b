// The entry point of the elementwise kernels: each of a workgroup's WG threads takes params.perThread of the params.n
// elements, WG apart (consecutive threads on consecutive elements), and the kernel's element(i) computes element i.
// More than one a thread where each invocation costs a fixed overhead (a CPU driver: kernels/spec.ts ELEMENTWISE_SHAPES);
// a parameter, not a constant, so that every count runs one pipeline.
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = (wid.x + wid.y * nwg.x) * WG * params.perThread + lid;
  for (var k = 0u; k < params.perThread; k++) {
    let i = first + k * WG;
    if (i >= params.n) { return; }
    element(i);
  }
}
