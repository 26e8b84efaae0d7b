// Model weights from a Hugging Face folder (model.safetensors or the sharded index), checked
// strictly against a parameter table before any tensor data is read: every missing, unexpected,
// wrongly shaped or wrongly typed tensor is listed in one WeightsError.
import { storageDtypeOf, type ParamSpec } from '../engine/params.ts';
import { numelOf, shapeString } from '../engine/tensor.ts';
import { SafetensorsFolder, toDType, type SafetensorsDType } from '../engine/safetensors.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, isFloatDType, type FloatDType, type HalfDType } from '../kernels/dtype.ts';

/** The file dtypes a weight may have: those of FloatDType. */
const WEIGHT_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16'];

/**
 * Non-parameter buffers that older checkpoints saved beside the weights, and nothing else: GPT-NeoX's
 * causal-mask buffers `attention.bias` / `attention.masked_bias` (old Pythia files) and rotary
 * `inv_freq` tables, which we recompute from the config.
 */
export const IGNORABLE_BUFFERS: readonly RegExp[] = [
  /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias)$/,
  /^(gpt_neox|model)(\.layers\.\d+\.(attention|self_attn))?\.rotary_emb\.inv_freq$/,
];

/** The folder's tensors do not match the parameter table; lists every problem. */
export class WeightsError extends Error {
  constructor(
    readonly where: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly misshaped: string[],
    /** Tensors larger than one buffer of the device they are meant for (ModelWeights.open's `limits`). */
    readonly tooLarge: string[] = [],
  ) {
    const section = (title: string, lines: string[]) => lines.length === 0 ? [] : [`${lines.length} ${title}:`, ...lines.map((l) => `  ${l}`)];
    super([
      `${where}: the weights do not match the parameter table${missing.length + unexpected.length + misshaped.length === 0 ? ' and the device' : ''}`,
      ...section('missing', missing),
      ...section('unexpected', unexpected),
      ...section('wrongly shaped or typed', misshaped),
      ...section('too large for one device buffer', tooLarge),
    ].join('\n'));
    this.name = 'WeightsError';
  }
}

/** The limit of GPUSupportedLimits that bounds one tensor's buffer (a tensor larger than one binding is bound in windows). */
export interface DeviceBufferLimits { maxBufferSize: number }

export interface OpenWeightsOptions {
  /** The device the weights go to: every tensor, in its storage dtype, must fit one buffer. */
  limits?: DeviceBufferLimits;
  /** The storage of frozen matrices (storageDtypeOf); f32 by default. */
  weightDtype?: FloatDType;
}

/** The tensors of `specs` that do not fit one buffer of a device with `limits`, each with its bytes and the limit. */
export function tooLargeForDevice(specs: readonly ParamSpec[], limits: DeviceBufferLimits, weightDtype: FloatDType = 'f32'): string[] {
  const limit = limits.maxBufferSize;
  return specs.flatMap((s) => {
    const dtype = storageDtypeOf(s, weightDtype);
    const bytes = (dtype === 'f32' ? 4 : 2) * numelOf(s.shape);
    return bytes > limit ? [`${s.name} ${shapeString(s.shape)}: ${bytes} bytes as ${dtype}, over this device's maxBufferSize (${limit} bytes)`] : [];
  });
}

/** An open, checked weights folder: every name in the table is present with its shape and a float dtype. */
export class ModelWeights {
  private constructor(private readonly folder: SafetensorsFolder, readonly specs: ParamSpec[]) {}

  /** Opens `dir` and checks its tensor headers against `specs` (and `limits`, when given); reads no tensor data. */
  static open(dir: string, specs: ParamSpec[], options: OpenWeightsOptions = {}): ModelWeights {
    const folder = SafetensorsFolder.open(dir);
    const wanted = new Set(specs.map((s) => s.name));
    const missing: string[] = [], misshaped: string[] = [];
    for (const s of specs) {
      if (!folder.has(s.name)) { missing.push(`${s.name} ${shapeString(s.shape)}`); continue; }
      const t = folder.info(s.name);
      const file = folder.fileOf(s.name).path;
      if (shapeString(t.shape) !== shapeString(s.shape)) misshaped.push(`${s.name}: ${shapeString(t.shape)} in ${file}, the table wants ${shapeString(s.shape)}`);
      else if (!WEIGHT_DTYPES.includes(t.dtype)) misshaped.push(`${s.name}: dtype ${t.dtype} in ${file}, wants one of ${WEIGHT_DTYPES.join(', ')}`);
    }
    const unexpected = folder.names()
      .filter((n) => !wanted.has(n) && !IGNORABLE_BUFFERS.some((re) => re.test(n)))
      .map((n) => `${n} ${shapeString(folder.info(n).shape)} in ${folder.fileOf(n).path}`);
    const tooLarge = options.limits ? tooLargeForDevice(specs, options.limits, options.weightDtype) : [];
    if (missing.length + unexpected.length + misshaped.length + tooLarge.length > 0) {
      folder.close();
      throw new WeightsError(folder.path, missing, unexpected, misshaped, tooLarge);
    }
    return new ModelWeights(folder, specs);
  }

  /** The model.safetensors file or the index the weights came from. */
  get path(): string { return this.folder.path; }

  dtypeOf(name: string): FloatDType {
    const dtype = toDType(this.folder.info(name).dtype);
    if (!dtype || !isFloatDType(dtype)) throw new Error(`unreachable: ${name} has dtype ${this.folder.info(name).dtype} (open() checks)`);
    return dtype;
  }

  /** As f32 (exact for all three dtypes). */
  read(name: string): Float32Array {
    return this.folder.read(name) as Float32Array;
  }

  /** The bytes exactly as stored, with their dtype. */
  readRaw(name: string): { dtype: FloatDType; bytes: Uint8Array } {
    return { dtype: this.dtypeOf(name), bytes: this.folder.readRaw(name) };
  }

  /** 16-bit bits in `format` for 16-bit GPU storage: the stored bits when they already are, else rounded to nearest even. */
  read16(name: string, format: HalfDType): Uint16Array {
    const { dtype, bytes } = this.readRaw(name);
    if (dtype === format) return new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    const f32 = dtype === 'f32' ? new Float32Array(bytes.buffer, 0, bytes.length / 4)
      : dtype === 'f16' ? f16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2))
        : bf16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2));
    return format === 'f16' ? f32ToF16(f32) : f32ToBf16(f32);
  }

  close(): void {
    this.folder.close();
  }
}

/** Checks the folder, then hands each parameter to `visit` as f32 in table order, one tensor in memory at a time. */
export function forEachWeight(dir: string, specs: ParamSpec[], visit: (spec: ParamSpec, data: Float32Array) => void): void {
  const weights = ModelWeights.open(dir, specs);
  try {
    for (const s of specs) visit(s, weights.read(s.name));
  } finally {
    weights.close();
  }
}

/** Every parameter as f32, by name (small models; a 7B model should stream with forEachWeight). */
export function loadWeights(dir: string, specs: ParamSpec[]): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  forEachWeight(dir, specs, (s, data) => out.set(s.name, data));
  return out;
}
