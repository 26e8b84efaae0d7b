// The second output of a layerNorm pair (bindings 3, 4 and 6): y2 = xhat · weight2 + bias2 beside y, two norms of
// one x from one pass over its row statistics (GPT-NeoX's parallel residual normalises x for the attention and for
// the MLP). The single norm includes layernorm_no_second_output.wgsl instead, which declares no binding.
@group(0) @binding(3) var<storage, read> weight2: array<f32>;
@group(0) @binding(4) var<storage, read> bias2: array<f32>;
@group(0) @binding(6) var<storage, read_write> y2: array<f32>;

fn writeSecond(i: u32, j: u32, xhat: f32) { y2[i] = xhat * weight2[j] + bias2[j]; }
