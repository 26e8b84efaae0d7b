// Training progress on the terminal: a cli-progress bar when the stream is a TTY, else a plain
// line every `every` steps (and at the last step), so that logs and CI output stay readable.
//
//   step 120/1000 | epoch 0.36 | loss 2.3456 | lr 1.20e-5 | 12,345 tok/s | eta 1h02m
//
// The ETA is measured from the first update() (a resumed run starts its clock at its first
// step, not at step 0): elapsed / steps done since then * steps left.

import cliProgress from 'cli-progress';

export interface ProgressUpdate {
  step: number;
  epoch?: number;
  loss?: number;
  lr?: number;
  tokensPerS?: number;
}

export interface ProgressOptions {
  total: number;
  /** Non-TTY: print a line every this many steps (default 10). */
  every?: number;
  /** Where to write (default process.stdout); its isTTY decides bar or plain lines. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Overrides the stream's isTTY (tests). */
  tty?: boolean;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

/** "45s", "12m05s", "3h07m"; "?" before the rate is known. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const fmt = {
  loss: (v?: number) => (v === undefined ? '-' : v.toFixed(4)),
  lr: (v?: number) => (v === undefined ? '-' : v.toExponential(2)),
  epoch: (v?: number) => (v === undefined ? '-' : v.toFixed(2)),
  tps: (v?: number) => (v === undefined ? '-' : Math.round(v).toLocaleString('en-US')),
};

export class Progress {
  private readonly total: number;
  private readonly every: number;
  private readonly stream: NodeJS.WritableStream;
  private readonly now: () => number;
  private readonly bar: cliProgress.SingleBar | undefined;
  private start: { step: number; time: number } | undefined;
  private lastPrinted = -1;

  constructor(options: ProgressOptions) {
    if (!Number.isSafeInteger(options.total) || options.total < 1) throw new Error(`progress: total must be a positive integer, got ${options.total}`);
    this.total = options.total;
    this.every = Math.max(1, options.every ?? 10);
    const stream = options.stream ?? process.stdout;
    this.stream = stream;
    this.now = options.now ?? Date.now;
    if (options.tty ?? stream.isTTY === true) {
      this.bar = new cliProgress.SingleBar({
        stream: stream as NodeJS.WritableStream,
        format: 'step {value}/{total} [{bar}] {percentage}% | epoch {epoch} | loss {loss} | lr {lr} | {tps} tok/s | eta {etaText}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      }, cliProgress.Presets.shades_classic);
    }
  }

  private eta(step: number): string {
    if (!this.start || step <= this.start.step) return '?';
    const rate = (this.now() - this.start.time) / 1000 / (step - this.start.step);
    return formatDuration(rate * (this.total - step));
  }

  /** Reports the state after optimizer step `u.step`. */
  update(u: ProgressUpdate): void {
    if (!this.start) this.start = { step: u.step, time: this.now() };
    const payload = { epoch: fmt.epoch(u.epoch), loss: fmt.loss(u.loss), lr: fmt.lr(u.lr), tps: fmt.tps(u.tokensPerS), etaText: this.eta(u.step) };
    if (this.bar) {
      if (this.lastPrinted < 0) this.bar.start(this.total, u.step, payload);
      else this.bar.update(u.step, payload);
      this.lastPrinted = u.step;
      return;
    }
    const due = this.lastPrinted < 0 || u.step % this.every === 0 || u.step >= this.total;
    if (!due || u.step === this.lastPrinted) return;
    this.lastPrinted = u.step;
    this.stream.write(
      `step ${u.step}/${this.total} | epoch ${payload.epoch} | loss ${payload.loss} | lr ${payload.lr} | ${payload.tps} tok/s | eta ${payload.etaText}\n`);
  }

  /** Prints a message without breaking the bar (eval results, checkpoint saves). */
  log(message: string): void {
    if (this.bar && this.lastPrinted >= 0) {
      // cli-progress redraws on the current line: clear it, print, and let the next update redraw.
      this.stream.write(`\r\x1b[2K${message}\n`);
      this.bar.render();
    } else {
      this.stream.write(`${message}\n`);
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}
