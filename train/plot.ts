// SVG plots of a run's metrics.jsonl, drawn with vega-lite and rendered headless by vega
// (renderer 'none' + toSVG() needs no canvas; text widths are estimated).
//
// One SVG per quantity, in runDir/plots/:
//   loss.svg        training loss vs step, with eval loss as a second series when the run has any
//   lr.svg          learning rate vs step
//   grad_norm.svg   gradient norm vs step
// A plot whose series is empty (no finite values) is not written. Long runs are thinned to at
// most `maxPoints` points per series by taking every k-th point (the last is always kept);
// points are drawn as symbols only when a series has at most SYMBOL_LIMIT of them.
//
// vega and vega-lite are ES modules with top-level await, which a CommonJS loader (uvu -r tsx
// transpiles to CommonJS) cannot require(); they are therefore loaded with import() on first use,
// which also keeps them off the start-up path of runs that never plot.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as VegaLite from 'vega-lite';
import { METRICS_FILE, readMetrics, type MetricsRecord } from './metrics.ts';

export const PLOTS_DIR = 'plots';
const SYMBOL_LIMIT = 200;

export interface PlotOptions {
  /** Most points per series (default 2000). */
  maxPoints?: number;
  width?: number;
  height?: number;
}

interface Point { step: number; value: number; series: string }

export interface PlotSpec {
  /** File name inside runDir/plots. */
  file: string;
  title: string;
  yTitle: string;
  points: Point[];
  spec: VegaLite.TopLevelSpec;
}

function thin(points: Point[], maxPoints: number): Point[] {
  if (points.length <= maxPoints) return points;
  const stride = Math.ceil(points.length / maxPoints);
  const out = points.filter((_, i) => i % stride === 0);
  if (out.at(-1) !== points.at(-1)) out.push(points.at(-1)!);
  return out;
}

function series(records: MetricsRecord[], type: string, field: string, name: string, maxPoints: number): Point[] {
  const points: Point[] = [];
  for (const r of records) {
    const v = r[field];
    if (r.type === type && typeof v === 'number' && Number.isFinite(v)) points.push({ step: r.step, value: v, series: name });
  }
  return thin(points, maxPoints);
}

function lineSpec(title: string, yTitle: string, points: Point[], options: PlotOptions, yFormat?: string): VegaLite.TopLevelSpec {
  const names = [...new Set(points.map((p) => p.series))];
  const counts = names.map((n) => points.filter((p) => p.series === n).length);
  return {
    title,
    width: options.width ?? 640,
    height: options.height ?? 320,
    background: 'white',
    data: { values: points },
    mark: { type: 'line', point: Math.max(...counts) <= SYMBOL_LIMIT, clip: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: yTitle, scale: { zero: false }, ...(yFormat ? { axis: { format: yFormat } } : {}) },
      color: {
        field: 'series', type: 'nominal', title: null, scale: { domain: names },
        legend: names.length > 1 ? { orient: 'top-right' } : null,
      },
    },
  } as VegaLite.TopLevelSpec;
}

/** The plots a set of records gives, as vega-lite specs (what writePlots renders). */
export function plotSpecs(records: MetricsRecord[], options: PlotOptions = {}): PlotSpec[] {
  const maxPoints = options.maxPoints ?? 2000;
  const plots: PlotSpec[] = [];
  const add = (file: string, title: string, yTitle: string, points: Point[], yFormat?: string) => {
    if (points.length > 0) plots.push({ file, title, yTitle, points, spec: lineSpec(title, yTitle, points, options, yFormat) });
  };
  add('loss.svg', 'Loss', 'loss', [
    ...series(records, 'train', 'loss', 'train loss', maxPoints),
    ...series(records, 'eval', 'eval_loss', 'eval loss', maxPoints),
  ]);
  add('lr.svg', 'Learning rate', 'learning rate', series(records, 'train', 'lr', 'learning rate', maxPoints), '.2~e');
  add('grad_norm.svg', 'Gradient norm', 'gradient norm', series(records, 'train', 'grad_norm', 'gradient norm', maxPoints));
  return plots;
}

/** Renders one vega-lite spec to an SVG string. */
export async function renderSvg(spec: VegaLite.TopLevelSpec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Reads runDir/metrics.jsonl and writes runDir/plots/*.svg; returns the written paths. */
export async function writePlots(runDir: string, options: PlotOptions = {}): Promise<string[]> {
  const { records } = readMetrics(path.join(runDir, METRICS_FILE));
  const dir = path.join(runDir, PLOTS_DIR);
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const p of plotSpecs(records, options)) {
    const file = path.join(dir, p.file);
    // Plots are cheap to redraw, so a plain write-then-rename is enough (no fsync).
    fs.writeFileSync(`${file}.tmp-${process.pid}`, await renderSvg(p.spec));
    fs.renameSync(`${file}.tmp-${process.pid}`, file);
    written.push(file);
  }
  return written;
}
