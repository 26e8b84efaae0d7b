// Dynamic loss scaling, torch.cuda.amp.GradScaler's rule: the loss is multiplied by `scale` before the backward, so
// that small gradients survive f16; a step whose gradients hold an inf or a NaN is skipped (no update, gradients
// dropped) and the scale multiplied by backoffFactor; after growthInterval clean steps in a row it is multiplied
// by growthFactor (when the result is finite). The scale is a float32, as torch's is. No GPU: TrainStep applies it.
export interface LossScalerOptions {
  /** The first scale (torch: 2^16). */
  initScale: number;
  /** The scale's factor after growthInterval clean steps (torch: 2). */
  growthFactor: number;
  /** The scale's factor after a step with non-finite gradients (torch: 0.5). */
  backoffFactor: number;
  /** Clean steps in a row before the scale grows (torch: 2000). */
  growthInterval: number;
}

/** torch.cuda.amp.GradScaler's defaults. */
export const GRAD_SCALER_DEFAULTS: LossScalerOptions = { initScale: 2 ** 16, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000 };

/** What a checkpoint keeps of a scaler (torch's state_dict names). */
export interface LossScalerState { scale: number; growth_tracker: number }

export class LossScalerError extends Error {
  constructor(message: string) { super(message); this.name = 'LossScalerError'; }
}

export class LossScaler {
  /** The factor of the next step's loss. */
  scale: number;
  /** Clean steps since the last growth or backoff. */
  growthTracker = 0;

  constructor(readonly options: LossScalerOptions = GRAD_SCALER_DEFAULTS) {
    const { initScale, growthFactor, backoffFactor, growthInterval } = options;
    if (!(Number.isFinite(Math.fround(initScale)) && initScale > 0)) throw new LossScalerError(`initScale ${initScale} must be a positive float32`);
    if (!(growthFactor > 1 && Number.isFinite(growthFactor))) throw new LossScalerError(`growthFactor ${growthFactor} must be above 1`);
    if (!(backoffFactor > 0 && backoffFactor < 1)) throw new LossScalerError(`backoffFactor ${backoffFactor} must be in (0, 1)`);
    if (!(Number.isSafeInteger(growthInterval) && growthInterval >= 1)) throw new LossScalerError(`growthInterval ${growthInterval} must be a positive integer`);
    this.scale = Math.fround(initScale);
  }

  /** After a step: foundInf says whether its gradients held an inf or a NaN (torch's _amp_update_scale_). */
  update(foundInf: boolean): void {
    if (foundInf) {
      this.scale = Math.fround(this.scale * this.options.backoffFactor);
      this.growthTracker = 0;
    } else if (this.growthTracker + 1 === this.options.growthInterval) {
      const grown = Math.fround(this.scale * this.options.growthFactor);
      if (Number.isFinite(grown)) this.scale = grown;
      this.growthTracker = 0;
    } else {
      this.growthTracker++;
    }
  }

  stateDict(): LossScalerState { return { scale: this.scale, growth_tracker: this.growthTracker }; }

  loadStateDict(d: LossScalerState): void {
    if (!(typeof d?.scale === 'number' && Number.isFinite(d.scale) && d.scale > 0 && Math.fround(d.scale) === d.scale))
      throw new LossScalerError(`loss scaler state: scale ${JSON.stringify(d?.scale)} must be a positive float32`);
    if (!(Number.isSafeInteger(d.growth_tracker) && d.growth_tracker >= 0 && d.growth_tracker < this.options.growthInterval))
      throw new LossScalerError(`loss scaler state: growth_tracker ${JSON.stringify(d.growth_tracker)} must be an integer in [0, ${this.options.growthInterval})`);
    this.scale = d.scale;
    this.growthTracker = d.growth_tracker;
  }
}
