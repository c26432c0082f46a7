/**
 * Pure logic of the Models page's scores table: which metrics, what a dash means, how a comparison with
 * the parent is worded, which metric the lineage chart opens on. No DOM (tested in scores.test.ts).
 */

/** Per-image scores and aggregates of one version (GET /model-versions/{id}/metrics/). */
export interface VersionMetrics {
  images: Array<{ image: number; split: string; dense: boolean; scores: Record<string, number> }>;
  aggregate: { all: Record<string, { mean?: number; n?: number; value?: number }> };
  dense_only_metrics: string[];
  lower_is_better: string[];
}

export interface Side {
  a: number;
  b: number;
  delta: number;
  verdict: "better" | "worse" | "same";
  n: number;
}

/** GET /projects/{pid}/model-versions/compare/?a=parent&b=version: means over the images both were scored on. */
export interface Comparison {
  aggregate: Record<string, Side>;
  shared_images: number;
  shared_splits: Record<string, number>;
  only_a: number;
  only_b: number;
}

/** Metrics shown as columns, in order; per-class IoU columns follow (one per class of the project). */
export const METRIC_NAMES: Record<string, string> = {
  f1_iou50: "F1 @ IoU 0.5",
  mean_iou: "mean IoU",
  iou_fg: "foreground IoU",
  pixel_error: "pixel error",
  adapted_rand_error: "adapted Rand error",
  warping_error: "warping error",
};
export const DENSE_ONLY = new Set(["f1_iou50", "rand_error", "adapted_rand_error", "warping_error"]);

export function classMetric(index: number): string {
  return `iou_class_${index}`;
}

export function fmt(v: number | undefined | null): string {
  return v === undefined || v === null ? "–" : v.toFixed(4);
}

/** Why a version has no value for `metric` (the tooltip of its dash). */
export function dashReason(metric: string, m: VersionMetrics | undefined): string {
  if (!m || !m.images.length) {
    return "not scored: this version has no scored image. Put labelled images in the validation split and train again, or press Predict all.";
  }
  if (DENSE_ONLY.has(metric) && m.images.every((e) => !e.dense)) {
    return "not scored: needs a densely labelled validation image (every pixel painted); the validation labels are strokes.";
  }
  if (metric.startsWith("iou_class_")) return "not scored: no validation image had that class.";
  return "not scored on these validation images.";
}

/** "4 shared validation images", "1 shared validation/test image". */
export function sharedText(c: Pick<Comparison, "shared_images" | "shared_splits">): string {
  const splits = Object.keys(c.shared_splits ?? {}).sort();
  const kind = splits.length ? splits.join("/") + " " : "";
  return `${c.shared_images} shared ${kind}image${c.shared_images === 1 ? "" : "s"}`;
}

/** The line under a version that has a parent: what its ▲/▼ marks are measured on. */
export function comparisonNote(parentNumber: number, c: Comparison | null): string {
  if (!c) return `not compared with v${parentNumber}: the comparison could not be loaded`;
  if (!c.shared_images) return `not compared with v${parentNumber}: no image was scored for both`;
  const extra = c.only_a || c.only_b ? ` (not counted: ${c.only_b} scored only for this version, ${c.only_a} only for v${parentNumber})` : "";
  return `▲/▼ vs v${parentNumber} on ${sharedText(c)}${extra}`;
}

export interface LineageVersion {
  id: number;
  number: number;
}

/** Points [version number, mean] of `metric` along a lineage (versions without the score are skipped). */
export function lineagePoints(chain: LineageVersion[], metrics: Map<number, VersionMetrics>, metric: string): Array<[number, number]> {
  const pts: Array<[number, number]> = [];
  for (const v of chain) {
    const m = metrics.get(v.id)?.aggregate.all[metric];
    if (m && m.mean !== undefined) pts.push([v.number, m.mean]);
  }
  return pts;
}

/** The metric the lineage chart opens on: the first of `keys` with the most points along the lineage (null: none has data). */
export function firstMetricWithData(chain: LineageVersion[], metrics: Map<number, VersionMetrics>, keys: string[]): string | null {
  let best: string | null = null, most = 0;
  for (const k of keys) {
    const n = lineagePoints(chain, metrics, k).length;
    if (n > most) {
      best = k;
      most = n;
    }
  }
  return best;
}
