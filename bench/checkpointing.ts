// Gradient checkpointing's memory at Pythia-1b and Mistral-7B shapes, on the real models (models/gpt_neox.ts,
// models/mistral.ts, the fused LM head), from steps small enough for any device: each shape's config with 1 and 2
// layers, at two sequence lengths, with checkpointing off and on. Pythia-1b trains in full (f32 weights, AdamW);
// Mistral-7B as juice trains a 7B: bf16 weights, frozen, and LoRA r 16 on its seven projections (an f32 matrix of its
// MLP, 235 MB, exceeds lavapipe's 128 MiB binding, and the products do not bind weights in windows). One training
// step each (SFT's next-token loss, backward, AdamW), after a first step that builds the pipelines; the pool's peak
// above the bytes live before the step (gradients, activations, the head's chunk) is fitted as a + b·T + L·(c + d·T),
// exactly, from the four runs of a mode (activations grow linearly in T: attention is fused, nothing is T x T), and
// the live bytes (weights, adapters, moments) as e + f·L; both are evaluated at the full depth and the target length.
// The fit is checked at a fifth point (2 layers at twice the longer length) before it is used. Times are lavapipe's.
// Usage: node --import tsx bench/checkpointing.ts [pythia-1b|mistral-7b] [--seq T1,T2] [--target T]
import { backward, zeroGrad } from '../engine/autodiff.ts';
import { gpu, initGpu, releaseGpu } from '../engine/gpu.ts';
import { makeOptimizer } from '../engine/optim.ts';
import { isMatrix, ParameterSet } from '../engine/params.ts';
import { pool } from '../engine/pool.ts';
import { flush } from '../engine/runtime.ts';
import { Tensor, numelOf, tidy } from '../engine/tensor.ts';
import { CausalLM } from '../models/causal_lm.ts';
import { modelParams, parseConfig } from '../models/config.ts';
import { LORA_TARGET_MODULES } from '../models/lora.ts';
import { attachLora, loraConfig } from '../models/peft.ts';
import { nextTokenLoss } from '../train/objectives/sft.ts';

// transformers' config.json fields of EleutherAI/pythia-1b and mistralai/Mistral-7B-v0.1 (the shapes that matter).
const SHAPES: Record<string, Record<string, unknown>> = {
  'pythia-1b': {
    model_type: 'gpt_neox', vocab_size: 50304, hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 8,
    intermediate_size: 8192, hidden_act: 'gelu', rotary_pct: 0.25, rotary_emb_base: 10000, max_position_embeddings: 2048,
    layer_norm_eps: 1e-5, use_parallel_residual: true, tie_word_embeddings: false,
  },
  'mistral-7b': {
    model_type: 'mistral', vocab_size: 32000, hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32,
    num_key_value_heads: 8, intermediate_size: 14336, hidden_act: 'silu', max_position_embeddings: 32768,
    rms_norm_eps: 1e-5, rope_theta: 10000, sliding_window: 4096, tie_word_embeddings: false,
  },
};

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** Shapes trained as a 7B is: bf16 weights, frozen, with LoRA adapters. */
const LORA_SHAPES = new Set(['mistral-7b']);
const LORA_R = 16;

/** One step's pool peak above the live bytes before it, those live bytes, and its time, for `layers` layers at B1 T. */
async function measure(name: string, layers: number, T: number, checkpointed: boolean): Promise<{ above: number; live: number; ms: number }> {
  const config = parseConfig({ ...SHAPES[name], num_hidden_layers: layers }, `${name} (bench/checkpointing.ts)`);
  const lora = LORA_SHAPES.has(name);
  // Zeros: the values do not change what is allocated, and a zero table is quick to build.
  const specs = modelParams(config).map((s) => (lora && isMatrix(s) ? { ...s, trainable: false } : s));
  const params = new ParameterSet(specs, (s) => (lora && isMatrix(s) ? { dtype: 'bf16', bits: new Uint16Array(numelOf(s.shape)) } : new Float32Array(numelOf(s.shape))));
  const model = new CausalLM(config, params);
  const targets = LORA_TARGET_MODULES[config.modelType].filter((m) => m !== 'lm_head' && m !== 'embed_out');
  if (lora) attachLora(model, loraConfig(config, { r: LORA_R, alpha: LORA_R, dropout: 0, targetModules: targets }));
  model.gradientCheckpointing = checkpointed;
  const optimizer = makeOptimizer('adamw', params.entries(), { lr: 1e-5, weightDecay: 0 });
  const ids = Tensor.fromArray(Array.from({ length: T }, (_, i) => (i * 7919) % config.vocabSize), [1, T], 'i32').keep();
  const step = async (): Promise<number> => {
    const loss = tidy(() => {
      const l = nextTokenLoss(model.tokenLogprobs(ids));
      backward(l);
      optimizer.step();
      zeroGrad(params.all());
      return l.keep();
    });
    flush();
    const [v] = await loss.toArray();
    loss.dispose();
    return v;
  };
  try {
    await step(); // builds every pipeline and the optimizer's moments
    const live = pool.liveBytes;
    pool.resetPeak();
    const t0 = performance.now();
    const loss = await step();
    const ms = performance.now() - t0;
    if (!Number.isFinite(loss)) throw new Error(`${name} ${layers} layers T${T}: loss ${loss}`);
    const above = pool.peakBytes - live;
    console.log(`${name} ${layers} layer${layers > 1 ? 's' : ''} B1 T${T} checkpointing ${checkpointed ? 'on ' : 'off'}: ${mib(above)} above ${mib(live)} live, ${(ms / 1000).toFixed(1)} s`);
    return { above, live, ms };
  } finally {
    ids.dispose();
    optimizer.dispose();
    params.dispose();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
  const names = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
  const [T1, T2] = (valueOf('--seq') ?? '64,128').split(',').map(Number);
  const target = Number(valueOf('--target') ?? 2048);
  console.log(`device: ${gpu().adapterInfo.description}; steps at B1 T${T1} and T${T2}, extrapolated to B1 T${target}`);
  const rows: string[] = [];
  for (const name of names.length ? names : Object.keys(SHAPES)) {
    const config = parseConfig(SHAPES[name], name);
    const times = new Map<boolean, number>();
    for (const checkpointed of [false, true]) {
      const m = new Map<string, { above: number; live: number; ms: number }>();
      for (const L of [1, 2]) for (const T of [T1, T2]) m.set(`${L}/${T}`, await measure(name, L, T, checkpointed));
      // peak(L, T) = a + b·T + L·(c + d·T): per layer (c + d·T) from the difference of 2 and 1 layers.
      const perLayer = (T: number) => m.get(`2/${T}`)!.above - m.get(`1/${T}`)!.above;
      const d = (perLayer(T2) - perLayer(T1)) / (T2 - T1), c = perLayer(T1) - d * T1;
      const rest = (T: number) => m.get(`1/${T}`)!.above - (c + d * T); // the head, the embedding's gradient, ...
      const b = (rest(T2) - rest(T1)) / (T2 - T1), a = rest(T1) - b * T1;
      const fit = (L: number, T: number) => a + b * T + L * (c + d * T);
      const check = await measure(name, 2, 2 * T2, checkpointed);
      const error = Math.abs(check.above - fit(2, 2 * T2)) / check.above;
      console.log(`  fit at 2 layers T${2 * T2}: ${mib(fit(2, 2 * T2))} predicted, ${mib(check.above)} measured (${(100 * error).toFixed(2)}%); a layer: ${mib(c)} + ${(d / 1024).toFixed(1)} KiB a token`);
      times.set(checkpointed, check.ms);
      if (error > 0.02) throw new Error(`${name}: the linear fit misses a measured point by ${(100 * error).toFixed(1)}%`);
      const full = fit(config.layers, target);
      const perLayerLive = m.get(`2/${T1}`)!.live - m.get(`1/${T1}`)!.live;
      const states = m.get(`1/${T1}`)!.live + (config.layers - 1) * perLayerLive; // weights, adapters, moments, the ids
      const how = LORA_SHAPES.has(name) ? `bf16 frozen, LoRA r ${LORA_R}` : 'f32, full';
      rows.push(`| ${name} (${how}) | ${checkpointed ? 'on' : 'off'} | ${mib(c + d * target)} | ${gib(full)} | ${gib(states)} | ${gib(full + states)} | ${(100 * error).toFixed(2)}% |`);
    }
    console.log(`${name}: a step at 2 layers T${2 * T2} took ${(times.get(true)! / times.get(false)!).toFixed(2)}x as long with checkpointing (lavapipe)`);
  }
  console.log(`\n| shape (${target} tokens, B1) | checkpointing | a layer's gradients and activations | above live, all layers | live before a step (weights, adapters, moments) | total | fit error |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}`);
}

await initGpu();
try { await main(); } finally { releaseGpu(); }
