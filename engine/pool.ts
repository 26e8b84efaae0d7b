// Buffer pool: storage buffers in size classes, reused across steps, with live and peak accounting.
import { awaitDevice, gpu, GpuError, deferGpuError, onGpuRelease } from './gpu.ts';

export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  readonly size: number; // the size class, >= the bytes asked for
  readonly id: number; // stable identity for bind-group caching
  /** Index of the last command batch that referenced this buffer (see runtime.ts). */
  lastBatch: number;
  readonly generation: number; // the device it belongs to; see releaseGpu()
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Four classes per power of two above 256 bytes: at most 25% of a buffer is slack. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  const octave = 2 ** Math.floor(Math.log2(b));
  const step = octave / 4;
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, PooledBuffer[]>();
  private nextId = 1;
  generation = 0;
  /** Bytes handed out and not yet released (size classes, as the GPU sees them). */
  liveBytes = 0;
  peakBytes = 0;
  /** Bytes of every buffer the pool has created and not destroyed, free or live. */
  reservedBytes = 0;

  acquire(bytes: number, what: string): PooledBuffer {
    const { device, limits } = gpu();
    // A buffer may exceed one binding: the ops that take such tensors bind them in windows (launch.ts bindingWindows).
    const maxBuffer = limits.maxBufferSize;
    if (bytes > maxBuffer)
      throw new GpuError(`${what}: ${bytes} bytes exceeds this device's maxBufferSize (${maxBuffer} bytes)`);
    const size = Math.min(sizeClass(bytes), Math.floor(maxBuffer / 4) * 4);
    let buf = this.free.get(size)?.pop();
    if (!buf) {
      device.pushErrorScope('out-of-memory');
      const buffer = device.createBuffer({ size, usage: USAGE, label: what });
      const live = this.liveBytes;
      awaitDevice(device.popErrorScope()).then((e) => {
        if (e) deferGpuError(new GpuError(`out of GPU memory allocating ${size} bytes for ${what} (pool: ${live} bytes live, ${this.reservedBytes} reserved): ${e.message}`));
      });
      buf = { buffer, size, id: this.nextId++, lastBatch: -1, generation: this.generation };
      this.reservedBytes += size;
    }
    this.liveBytes += size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    return buf;
  }

  release(buf: PooledBuffer): void {
    if (buf.generation !== this.generation) return; // its device is gone
    this.liveBytes -= buf.size;
    let list = this.free.get(buf.size);
    if (!list) this.free.set(buf.size, (list = []));
    list.push(buf);
  }

  resetPeak(): void { this.peakBytes = this.liveBytes; }

  /** Destroys the free buffers (live ones stay). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { b.buffer.destroy(); this.reservedBytes -= b.size; }
    this.free.clear();
  }
}

export const pool = new BufferPool();
onGpuRelease(() => { pool.trim(); pool.generation++; pool.liveBytes = pool.peakBytes = pool.reservedBytes = 0; });
