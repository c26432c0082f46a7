import { describe, expect, it } from "vitest";
import { describeComparison, type Comparison } from "./baselines";

const base: Comparison = {
  split: "validation", images: 2, headline: "f1_iou50", unet_loses_to: [], advice: "",
  metrics: { f1_iou50: { unet: 0.8, threshold: 0.7, forest: 0.6, best: "unet", lower_is_better: false } },
};

describe("baseline comparison", () => {
  it("says the U-Net is ahead, on how many images", () => {
    expect(describeComparison(base)).toBe(
      "U-Net F1 @ IoU 0.5 0.800 vs threshold 0.700, random forest 0.600 on the same 2 held-out images: the U-Net is ahead of (or ties with) both baselines.");
  });
  it("names the baselines the U-Net loses to", () => {
    const c = { ...base, unet_loses_to: ["threshold", "forest"], advice: "paint" };
    expect(describeComparison(c)).toMatch(/scores below the threshold and the random forest\.$/);
  });
  it("notes outlines a baseline matches better only when the U-Net wins the headline", async () => {
    const { outlineNote } = await import("./baselines");
    const metrics = { ...base.metrics, iou_fg: { unet: 0.65, threshold: 0.68, forest: 0.6, best: "threshold", lower_is_better: false } };
    const c = { ...base, metrics, outline_loses_to: ["threshold"], outline_advice: "Paint up to the edges." };
    expect(outlineNote(c)).toBe("Foreground IoU: U-Net 0.650 vs threshold 0.680. Paint up to the edges.");
    expect(outlineNote({ ...c, outline_loses_to: [] })).toBeNull();
    expect(outlineNote(base)).toBeNull();  // a server without the field
    expect(outlineNote({ ...c, unet_loses_to: ["forest"], advice: "paint" })).toBeNull();  // the headline advice says it
  });
  it("handles a comparison without a shared metric", () => {
    expect(describeComparison({ ...base, headline: null, metrics: {} })).toMatch(/No metric/);
  });
});

describe("gate note", () => {
  it("says the gate is on, why it is off, and nothing for membranes or older versions", async () => {
    const { gateNote } = await import("./baselines");
    expect(gateNote({ intensity_gate: { weights: [1], threshold: 0.4, smooth: 1, kept: { "2": 0.97 } } }))
      .toMatch(/^Intensity gate on: .*calls background are dropped.*untick "intensity gate" on the Training page \(intensity_gate: false\)\.$/);
    expect(gateNote({ intensity_gate: { kept: { "2": 0.5 }, off: "the threshold keeps only 50% of the pixels painted as class 2" } }))
      .toBe("Intensity gate off: the threshold keeps only 50% of the pixels painted as class 2.");
    expect(gateNote({ intensity_gate: { off: "objects are split by painted membranes" } })).toBeNull();
    expect(gateNote({ split: "shape" })).toBeNull();
    expect(gateNote(undefined)).toBeNull();
  });
});

describe("held-out note", () => {
  it("says which strip of the one labelled image was scored, and why when it is not the right-most quarter", async () => {
    const { heldOutNote } = await import("./baselines");
    const images = [{ id: 4, file: "cells.tif" }];
    expect(heldOutNote({ images, held_out: [{ image: 4, split: "holdout", strip: { side: "right" } }] }))
      .toMatch(/^Scored on the right-most quarter of the labelled columns of cells\.tif, kept out of training\. With no image/);
    expect(heldOutNote({ images, held_out: [{ image: 4, split: "holdout", strip: { side: "bottom" } }] }))
      .toMatch(/^Scored on the bottom quarter of the labelled rows of cells\.tif, kept out of training \(the right-most quarter held more than half of one class's labels/);
    expect(heldOutNote({ held_out: [{ image: 9, split: "holdout", strip: { side: "left" } }] }))
      .toMatch(/^Scored on the left-most quarter of the labelled columns of your one labelled image/);
    // whole images scored (validation, or one image in five), nothing held out, or an older version: nothing to say
    expect(heldOutNote({ images, held_out: [{ image: 4, split: "validation", strip: null }] })).toBeNull();
    expect(heldOutNote({ images, held_out: [] })).toBeNull();
    expect(heldOutNote({ held_out: [{ image: 4, split: "holdout", columns_from: 120 }] })).toBeNull();
    expect(heldOutNote(undefined)).toBeNull();
  });
});

describe("edges note", () => {
  it("says when edges are calibrated and how to keep the network's own, and nothing when they are not", async () => {
    const { edgesNote } = await import("./baselines");
    expect(edgesNote({ edge_calibration: { on: true } }))
      .toMatch(/^Edge calibration on: .*grey level of that image.*set "Edge calibration" to off on the Training page \(edge_calibration: false\)\.$/);
    expect(edgesNote({ edge_calibration: { off: "not asked for in the training settings (edge_calibration: false)" } }))
      .toBeNull();
    // auto: the held-out labels chose, and the note gives both IoUs either way
    expect(edgesNote({ edge_calibration: { on: true, auto: "...", iou_fg_without: 0.6204, iou_fg_with: 0.7171 } }))
      .toMatch(/^Edge calibration on \(chosen on the held-out labels: foreground IoU 0\.620 without it, 0\.717 with\): each prediction/);
    expect(edgesNote({ edge_calibration: { off: "auto: ...", iou_fg_without: 0.8, iou_fg_with: 0.7 } }))
      .toBe("Edge calibration off (chosen on the held-out labels: foreground IoU 0.800 without it, 0.700 with): predictions keep "
        + "the network's own edges. Set \"Edge calibration\" to on on the Training page to use it anyway (edge_calibration: true).");
    expect(edgesNote({ edge_calibration: { off: "auto: no held-out labels to choose on", iou_fg_without: null, iou_fg_with: null } }))
      .toMatch(/^Edge calibration off: auto had no held-out labels/);
    expect(edgesNote({ edge_calibration: { off: "objects are split by painted membranes" } })).toBeNull();
    expect(edgesNote({ edge_calibration: { on: "yes" } })).toBeNull();
    expect(edgesNote({ split: "shape" })).toBeNull();
    expect(edgesNote(undefined)).toBeNull();
  });
});

describe("split note", () => {
  it("explains the membrane split and the prior, and says nothing for the usual split", async () => {
    const { splitNote } = await import("./baselines");
    expect(splitNote({ split: "boundaries", prior_weight: 0.3 })).toMatch(/thin lines between objects.*connected components.*1-px line where two meet.*weight 0\.3\)\.$/);
    expect(splitNote({ split: "boundaries", prior_weight: 0 })).toMatch(/not split by shape, .*where two meet\.$/);
    expect(splitNote({ split: "shape", prior_weight: 0 })).toBeNull();
    expect(splitNote({ split: "shape", intensity_split: { weights: [-1] } }))
      .toMatch(/^Intensity split on: .*colonies.*darker than the background, so the image is inverted.*\(intensity_split: false\)\.$/);
    expect(splitNote({ split: "shape", intensity_split: { weights: [1] } })).not.toMatch(/inverted|channels/);
    expect(splitNote({ split: "shape", intensity_split: { weights: [0.6, -0.8, 0] } })).toMatch(/channels weighted/);
    expect(splitNote({ split: "shape", intensity_split: { off: "switched off in the training settings (intensity_split: false)" } }))
      .toBe("Intensity split off (touching objects are split by shape): switched off in the training settings (intensity_split: false).");
    expect(splitNote({ split: "shape", intensity_split: { off: "objects are split by painted membranes" } })).toBeNull();
    expect(splitNote({})).toBeNull();
    expect(splitNote(undefined)).toBeNull();
  });
});

describe("size note", () => {
  it("says what set the object size, and how to set it when strokes with ids could not", async () => {
    const { sizeNote } = await import("./baselines");
    expect(sizeNote({ split: "shape", object_radius: 9.04, painted_objects: { with_ids: 6, whole: 5 } }))
      .toBe("Object size: radius 9.0 px, the median of the 5 objects painted whole; touching objects are split at that size.");
    expect(sizeNote({ split: "shape", object_radius: null, painted_objects: { with_ids: 12, whole: 1 } }))
      .toMatch(/^Object size: estimated from each prediction\. Of the 12 objects painted with their own id, 1 looks painted whole .*polygon or the fill, or paint their outline as background\.$/);
    expect(sizeNote({ split: "shape", object_radius: null, painted_objects: { with_ids: 0, whole: 0 } }))
      .toBe("Object size: estimated from each prediction (no objects painted whole).");
    expect(sizeNote({ split: "boundaries", object_radius: null })).toBeNull();  // membranes: no watershed
    expect(sizeNote({ split: "shape" })).toBeNull();  // a version that did not record it
    expect(sizeNote(undefined)).toBeNull();
    // the project's object diameter wins; painted objects that disagree by more than 1.5x are pointed out
    expect(sizeNote({ split: "shape", object_size: 12, object_radius: null, painted_objects: { with_ids: 0, whole: 0 } }))
      .toBe("Object size: diameter 24.0 px, set on the project page; touching objects are split at that size.");
    expect(sizeNote({ split: "shape", object_size: 12, object_radius: 13, painted_objects: { with_ids: 4, whole: 4 } }))
      .toBe("Object size: diameter 24.0 px, set on the project page; touching objects are split at that size. "
        + "The 4 objects painted whole measure a diameter of 26.0 px.");
    expect(sizeNote({ split: "shape", object_size: 5, object_radius: 13, painted_objects: { with_ids: 4, whole: 4 } }))
      .toContain("measure a diameter of 26.0 px: check the project's setting.");
    expect(sizeNote({ split: "boundaries", object_size: 5, object_radius: null })).toBeNull();
  });
});
