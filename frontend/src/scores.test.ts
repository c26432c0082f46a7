import { describe, expect, it } from "vitest";
import { comparisonNote, dashReason, firstMetricWithData, sharedText, type VersionMetrics } from "./scores";

const metrics = (images: VersionMetrics["images"], all: VersionMetrics["aggregate"]["all"]): VersionMetrics =>
  ({ images, aggregate: { all }, dense_only_metrics: [], lower_is_better: [] });

describe("scores table logic", () => {
  it("explains each kind of dash", () => {
    expect(dashReason("pixel_error", undefined)).toMatch(/no scored image/);
    const sparse = metrics([{ image: 1, split: "validation", dense: false, scores: { pixel_error: 0.1 } }], {});
    expect(dashReason("f1_iou50", sparse)).toMatch(/densely labelled/);
    expect(dashReason("iou_class_3", sparse)).toBe("not scored: no validation image had that class.");
  });

  it("says how many images both versions were compared on", () => {
    expect(sharedText({ shared_images: 4, shared_splits: { validation: 4 } })).toBe("4 shared validation images");
    expect(sharedText({ shared_images: 1, shared_splits: { test: 1 } })).toBe("1 shared test image");
    expect(comparisonNote(1, { aggregate: {}, shared_images: 0, shared_splits: {}, only_a: 3, only_b: 1 })).toBe("not compared with v1: no image was scored for both");
    expect(comparisonNote(1, { aggregate: {}, shared_images: 2, shared_splits: { validation: 2 }, only_a: 1, only_b: 0 }))
      .toBe("▲/▼ vs v1 on 2 shared validation images (not counted: 0 scored only for this version, 1 only for v1)");
  });

  it("opens the lineage chart on a metric with data", () => {
    const m = new Map<number, VersionMetrics>([
      [10, metrics([], { pixel_error: { mean: 0.2, n: 1 } })],
      [11, metrics([], { pixel_error: { mean: 0.1, n: 1 }, iou_fg: { mean: 0.5, n: 1 } })],
    ]);
    const chain = [{ id: 10, number: 1 }, { id: 11, number: 2 }];
    expect(firstMetricWithData(chain, m, ["f1_iou50", "iou_fg", "pixel_error"])).toBe("pixel_error");
    expect(firstMetricWithData(chain, m, ["f1_iou50"])).toBeNull();
  });
});
