// Reverse-mode autodiff on a tape: ops append nodes in execution order; backward() walks them once, in reverse.
//
// Gradient contract: a parameter's (leaf's) .grad accumulates (+=) across backward() calls until zeroGrad();
// an activation's gradient is written once, and added only where the activation fans out to several ops.
// Each node holds (retains) only the tensors its backward needs, and releases them right after it ran.
// checkpoint(fn, x) is one node that holds only x and replays fn in the backward (activation recomputation).
// Recording modes: noGrad (nothing recorded), checkpoint's forward (run as recorded, nothing kept) and autocast
// (mixed precision: the models' products read f16 copies), which a replay restores as its forward ran.
import { GpuError } from './gpu.ts';
import { deviceLimits, elementwiseShape, launch, launchInWindows } from './launch.ts';
import { ledger } from './ledger.ts';
import { Tensor, shapeString, tidy } from './tensor.ts';
import { accumulateCall } from '../kernels/accumulate.ts';
import { binaryCall } from '../kernels/binary.ts';
import { fillCall } from '../kernels/fill.ts';
import { scaleCall } from '../kernels/scale.ts';

export type Grad = Tensor | null;

interface TapeNode {
  op: string;
  inputs: Tensor[];
  outputs: Tensor[];
  saved: Tensor[];
  backward: (gradOutputs: Grad[]) => Grad[];
}

let tape: TapeNode[] = []; // a fresh one while checkpoint() replays a function in the backward
let noGradDepth = 0;
let discardDepth = 0; // > 0 in checkpoint()'s forward: ops run as if recorded, but no node is kept
let autocastDepth = 0;

export function gradEnabled(): boolean { return noGradDepth === 0; }

/** Runs fn without recording: for evaluation, generation and optimizer updates. */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  try { return fn(); } finally { noGradDepth--; }
}

export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  noGradDepth++;
  try { return await fn(); } finally { noGradDepth--; }
}

/** Runs fn with the models' products on f16 copies of their f32 operands (torch.autocast's role; see autocastF16). */
export function autocast<T>(fn: () => T): T {
  autocastDepth++;
  try { return fn(); } finally { autocastDepth--; }
}

/**
 * True inside autocast: the models' products (models/lora.ts projections, CausalLM's head) and attention cast their
 * f32 operands with engine/ops/cast.ts castF16. A checkpointed layer's replay runs in the mode its forward ran in.
 */
export function autocastF16(): boolean { return autocastDepth > 0; }

/**
 * Records an op if any input needs a gradient. `saved` are the tensors backward reads; backward gets one
 * gradient per output (null where none flowed) and returns one per input (null where not needed).
 */
export function record(op: string, inputs: Tensor[], outputs: Tensor[], saved: Tensor[], backward: (gradOutputs: Grad[]) => Grad[]): void {
  if (noGradDepth > 0 || !inputs.some((t) => t.requiresGrad)) return;
  for (const o of outputs) { o.requiresGrad = true; o.hasProducer = true; }
  if (discardDepth > 0) return;
  for (const s of saved) s.retain();
  tape.push({ op, inputs, outputs, saved, backward });
}

export function tapeLength(): number { return tape.length; }

/**
 * Activation recomputation (torch.utils.checkpoint): y = fn(x), keeping only x for the backward. The forward
 * runs fn as if recording (gradEnabled() holds, so dropout applies, and requiresGrad propagates to y) but keeps
 * no node, so fn's intermediates are freed at its end; one node saves x. Its backward runs fn again on a leaf
 * view of x, on a tape of its own, and back-propagates y's gradient through it: the parameters fn reads
 * accumulate their .grad there as in any backward, and x's gradient is the leaf's. fn must compute the same
 * function both times: its randomness keyed (ops/dropout.ts), not drawn. Under noGrad, or inside another
 * checkpoint's forward (whose replay records this one), it is fn(x).
 */
export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor): Tensor {
  if (noGradDepth > 0 || discardDepth > 0) return fn(x);
  discardDepth++;
  let y: Tensor;
  try { y = tidy(() => fn(x)); } finally { discardDepth--; }
  if (!y.requiresGrad) return y; // nothing fn read needs a gradient
  x.retain();
  const mixed = autocastF16(); // the backward runs outside autocast: the replay must cast as this forward did
  const again = mixed ? (v: Tensor) => autocast(() => fn(v)) : fn;
  tape.push({ op: 'checkpoint', inputs: [x], outputs: [y], saved: [x], backward: ([dy]) => [replay(again, x, dy!)] });
  return y;
}

/** checkpoint()'s backward: fn(x) recorded afresh (its forward charged to `<phase>-recompute`), dy back-propagated through it. */
function replay(fn: (x: Tensor) => Tensor, x: Tensor, dy: Tensor): Grad {
  const outer = { tape, noGradDepth, phase: ledger.phase };
  tape = [];
  noGradDepth = 0; // the outer backward runs this under noGrad
  try {
    const leaf = x.reshape(x.shape); // shares x's memory; a leaf of this tape, so its gradient lands in leaf.grad
    leaf.requiresGrad = x.requiresGrad;
    const y = ledger.inPhase(`${outer.phase}-recompute`, () => fn(leaf));
    backward(y, dy, outer.phase);
    return leaf.grad;
  } finally {
    clearTape(); // empty unless fn or the backward threw
    tape = outer.tape;
    noGradDepth = outer.noGradDepth;
  }
}

/**
 * Back-propagates from `loss` (a scalar unless `seed`, its gradient, is given) and empties the tape:
 * a second backward() needs a new forward. The caller keeps ownership of `seed`.
 */
export function backward(loss: Tensor, seed?: Tensor, phase = 'backward'): void {
  if (!loss.requiresGrad) throw new GpuError('backward(): the loss does not depend on any tensor that requires a gradient');
  if (!seed && loss.numel !== 1) throw new GpuError(`backward(): loss has shape ${shapeString(loss.shape)}; pass a seed gradient for non-scalar outputs`);
  if (seed && seed.numel !== loss.numel) throw new GpuError(`backward(): seed ${shapeString(seed.shape)} for loss ${shapeString(loss.shape)}`);
  if (loss.hasProducer && !tape.some((n) => n.outputs.includes(loss)))
    throw new GpuError('backward(): the loss is not on the tape (an earlier backward() emptied it); run the forward again');
  const grads = new Map<Tensor, Tensor>();
  const adopted = new Set<Tensor>(); // gradients that became a leaf's .grad
  ledger.inPhase(phase, () => {
    if (seed) grads.set(loss, seed.retain());
    else { const s = ones(loss.shape); grads.set(loss, s.retain()); s.dispose(); }
    for (let n = tape.length - 1; n >= 0; n--) {
      const node = tape[n];
      const gOut = node.outputs.map((o) => grads.get(o) ?? null);
      if (gOut.some((g) => g !== null)) {
        // No higher-order gradients: ops that a backward calls must not append to the tape it walks.
        const gIn = tidy(() => noGrad(() => node.backward(gOut)));
        if (gIn.length !== node.inputs.length) throw new GpuError(`backward of '${node.op}' returned ${gIn.length} gradients for ${node.inputs.length} inputs`);
        for (const g of gIn) g?.retain();
        node.inputs.forEach((x, i) => {
          const g = gIn[i];
          if (!g || !x.requiresGrad) return;
          if (g.numel !== x.numel) throw new GpuError(`backward of '${node.op}': gradient ${shapeString(g.shape)} for input ${shapeString(x.shape)}`);
          if (!x.hasProducer) {
            // A leaf: the first gradient becomes its .grad when nothing else can see that memory, otherwise a
            // private copy (g may be a view of another gradient, and later += must not write through it).
            if (x.grad) accumulate(x.grad, g);
            else if (g.ownsStorage() && sameShape(g.shape, x.shape) && !adopted.has(g) && ![...grads.values()].includes(g)) {
              adopted.add(g);
              x.grad = g.keep();
            } else x.grad = copyOf(g, x.shape).keep();
          } else {
            const prev = grads.get(x);
            if (prev) {
              const sum = sumOf(prev, g);
              grads.set(x, sum.retain());
              sum.dispose();
              prev.release();
            } else grads.set(x, g.retain());
          }
        });
        for (const g of gIn) { g?.release(); if (g && !adopted.has(g)) g.dispose(); }
      }
      for (const o of node.outputs) { grads.get(o)?.release(); grads.delete(o); }
      for (const s of node.saved) s.release();
    }
  });
  tape.length = 0;
  for (const g of grads.values()) g.release();
}

// The kernels backward() runs itself, launched directly: ops/ import this module, so it cannot import them.

/** A tensor of ones: the gradient of a scalar loss with respect to itself. */
function ones(shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape, 'f32', 'fill');
  launch(fillCall(deviceLimits(), out.numel, 1, elementwiseShape()), [], [out]);
  return out;
}

/** acc += x, elementwise over equal element counts (a leaf's gradient accumulation), window by window when large. */
function accumulate(acc: Tensor, x: Tensor): void {
  launchInWindows(acc.numel, [x], [acc], (n) => accumulateCall(deviceLimits(), n, elementwiseShape()));
}

/** A private copy of g with the given shape. */
function copyOf(g: Tensor, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape, g.dtype, 'copy');
  launchInWindows(g.numel, [g], [out], (n) => scaleCall(deviceLimits(), n, 1, 'copy', elementwiseShape()));
  return out;
}

/** a + b elementwise, in a's shape (fan-out: two gradients of one activation). */
function sumOf(a: Tensor, b: Tensor): Tensor {
  const out = Tensor.empty(a.shape, 'f32', 'add');
  const n = a.numel;
  launch(binaryCall(deviceLimits(), 'add', [1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1], n, n, elementwiseShape()), [a, b], [out]);
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean { return a.length === b.length && a.every((d, i) => d === b[i]); }

/** Drops the tape without back-propagating (e.g. after an evaluation that recorded by mistake). */
export function clearTape(): void {
  for (const node of tape) for (const s of node.saved) s.release();
  tape.length = 0;
}

/** Zeroes the accumulated gradients of the given leaves. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) if (p.grad) { p.grad.dispose(); p.grad = null; }
}
