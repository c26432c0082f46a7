/**
 * The U-Net beside its baselines: every training run also fits a threshold and an ilastik-style random
 * forest on the same labels and scores them on the same held-out images. Shown on the Models page (per
 * version) and on the Training page (the run's version), with what to paint next when the U-Net loses.
 */
import { h } from "./ui";

export interface Comparison {
  split: string;
  images: number | null;
  headline: string | null;
  metrics: Record<string, Record<string, number | string | boolean>>;
  unet_loses_to: string[];
  advice: string;
  /** Baselines ahead in foreground IoU while the U-Net wins (or ties) the headline: its outlines are off. */
  outline_loses_to?: string[];
  outline_advice?: string;
}

export const METHOD_NAMES: Record<string, string> = {
  unet: "U-Net",
  threshold: "threshold",
  forest: "random forest",
};

export const METRIC_NAMES: Record<string, string> = {
  f1_iou50: "F1 @ IoU 0.5",
  iou_fg: "foreground IoU",
  adapted_rand_error: "adapted Rand error",
  mean_iou: "mean IoU",
  pixel_error: "pixel error",
};

/** One sentence: how the U-Net did against the baselines on the headline metric (same images). */
export function describeComparison(c: Comparison): string {
  if (!c.headline) return "No metric was scored for the U-Net and the baselines alike.";
  const m = c.metrics[c.headline];
  const name = METRIC_NAMES[c.headline] ?? c.headline;
  const others = Object.keys(m).filter((k) => k !== "unet" && k !== "best" && k !== "lower_is_better");
  const parts = others.map((k) => `${METHOD_NAMES[k] ?? k} ${Number(m[k]).toFixed(3)}`).join(", ");
  const where = `on the same ${c.images ?? "?"} held-out image${c.images === 1 ? "" : "s"}`;
  const head = `U-Net ${name} ${Number(m.unet).toFixed(3)} vs ${parts} ${where}`;
  if (c.unet_loses_to.length) {
    return `${head}: the U-Net scores below the ${c.unet_loses_to.map((k) => METHOD_NAMES[k] ?? k).join(" and the ")}.`;
  }
  return `${head}: the U-Net is ahead of (or ties with) both baselines.`;
}

/**
 * When the U-Net wins (or ties) the headline but a baseline has the better foreground IoU: one sentence with
 * the scores and what to paint (the server's advice); null otherwise.
 */
export function outlineNote(c: Comparison): string | null {
  const who = c.outline_loses_to ?? [];
  const m = c.metrics.iou_fg;
  if (!who.length || !m || c.unet_loses_to.length) return null;
  const scores = who.map((k) => `${METHOD_NAMES[k] ?? k} ${Number(m[k]).toFixed(3)}`).join(", ");
  return `Foreground IoU: U-Net ${Number(m.unet).toFixed(3)} vs ${scores}. ${c.outline_advice ?? ""}`.trim();
}

/** The comparison as a small block; null when the version has none (uploaded, or nothing held out). */
export function comparisonBlock(c: Comparison | null | undefined, testid: string): HTMLElement | null {
  if (!c) return null;
  const loses = c.unet_loses_to.length > 0;
  const outline = outlineNote(c);
  const table = h("table", { class: "baselines" },
    h("tr", {}, h("th", {}, "metric"), ...["unet", "threshold", "forest"].map((k) => h("th", {}, METHOD_NAMES[k]))),
    ...Object.entries(c.metrics).map(([key, m]) => h("tr", {},
      h("td", {}, METRIC_NAMES[key] ?? key),
      ...["unet", "threshold", "forest"].map((k) => h("td", {
        style: { fontWeight: m.best === k ? "700" : "400" }, "data-testid": `${testid}-${k}-${key}`,
      }, m[k] === undefined ? "–" : Number(m[k]).toFixed(3))))));
  return h("div", { class: loses ? "baseline-warning" : "baseline-ok", "data-testid": testid, "data-loses": String(loses) },
    h("div", {}, describeComparison(c)),
    loses ? h("div", { "data-testid": `${testid}-advice` }, h("strong", {}, "What to paint next: "), c.advice) : null,
    outline ? h("div", { "data-testid": `${testid}-outline` }, h("strong", {}, "Outlines: "), outline) : null,
    table);
}

/** What set the size touching objects are split at (``object_size``, ``object_radius``, ``painted_objects`` of the
 * provenance): the project's object diameter, the objects painted whole, or an estimate from each prediction, with
 * why and how to set it. Null for versions that did not record it and where membranes split the objects (there the
 * size only sets the smallest object kept). */
export function sizeNote(provenance: Record<string, unknown> | undefined): string | null {
  if (!provenance || !("object_radius" in provenance) || provenance.split === "boundaries") return null;
  const radius = provenance.object_radius;
  const painted = provenance.painted_objects as { with_ids?: unknown; whole?: unknown } | undefined;
  const whole = typeof painted?.whole === "number" ? painted.whole : null;
  const withIds = typeof painted?.with_ids === "number" ? painted.with_ids : 0;
  const set = provenance.object_size;
  if (typeof set === "number") {
    const measured = typeof radius === "number"
      ? ` The ${whole !== null ? `${whole} ` : ""}objects painted whole measure a diameter of ${(2 * radius).toFixed(1)} px${Math.max(radius / set, set / radius) > 1.5 ? ": check the project's setting" : ""}.`
      : "";
    return `Object size: diameter ${(2 * set).toFixed(1)} px, set on the project page; touching objects are split at that size.${measured}`;
  }
  if (typeof radius === "number") {
    return `Object size: radius ${radius.toFixed(1)} px, the median of the ${whole ?? "painted"} objects painted whole; touching objects are split at that size.`;
  }
  if (!withIds) return "Object size: estimated from each prediction (no objects painted whole).";
  return `Object size: estimated from each prediction. Of the ${withIds} objects painted with their own id, ${whole ?? 0} `
    + `${whole === 1 ? "looks" : "look"} painted whole`
    + " (at least 3 are needed): a stroke inside an object, even in instance mode, is the brush's size, "
    + "not the object's. To set the size, draw a few objects whole with the polygon or the fill, or paint their outline as background.";
}

/**
 * How the version's objects are separated, from its training provenance (``split``, ``prior_weight``,
 * ``intensity_split``): a sentence when the painted background was membranes (the objects are what the painted
 * lines enclose, and training learned from the threshold where it was clear), or when the watershed adds the
 * grey values (``intensity_split`` with weights) or was told not to; null for versions without either.
 */
export function splitNote(provenance: Record<string, unknown> | undefined): string | null {
  if (!provenance) return null;
  if (provenance.split !== "boundaries") {
    const intensity = provenance.intensity_split as { weights?: unknown; off?: unknown } | undefined;
    if (!intensity || typeof intensity !== "object") return null;
    if (Array.isArray(intensity.weights)) {
      const w = intensity.weights as number[];
      const polarity = w.length === 1 && w[0] < 0
        ? " (your objects are darker than the background, so the image is inverted for it)"
        : w.length > 1 ? " (the channels weighted as your strokes tell objects from background)" : "";
      return "Intensity split on: where the prediction merges touching objects into colonies much larger than the objects, "
        + "the watershed adds the image" + polarity + ", so a bright or dim line between two objects becomes a border; "
        + "elsewhere objects are split by shape. To split by shape alone, untick \"intensity split\" on the Training "
        + "page (intensity_split: false).";
    }
    if (typeof intensity.off === "string" && !intensity.off.includes("membranes")) {
      return `Intensity split off (touching objects are split by shape): ${intensity.off}.`;
    }
    return null;
  }
  const prior = typeof provenance.prior_weight === "number" && provenance.prior_weight > 0
    ? ` Training also labelled the unpainted pixels that the threshold calls clearly object or background (weight ${provenance.prior_weight}).`
    : "";
  return "Your background strokes are thin lines between objects (membranes), so objects are the regions those lines enclose "
    + "(connected components), not split by shape, each grown over the predicted membrane up to a 1-px line where two meet." + prior;
}

/**
 * Where the version's scores come from when the run had one labelled image and no validation image, from its
 * training provenance (``held_out``: the strip of that image's labels kept out of training and scored, and why
 * it is not the right-most quarter when it is not); null when whole images were scored.
 */
export function heldOutNote(provenance: Record<string, unknown> | undefined): string | null {
  type Held = { image?: unknown; split?: unknown; strip?: { side?: unknown } | null };
  const held = provenance?.held_out as Held[] | undefined;
  if (!Array.isArray(held)) return null;
  const one = held.find((x) => x && x.split === "holdout" && x.strip && typeof x.strip.side === "string");
  if (!one) return null;
  const side = one.strip!.side as string;
  const images = provenance?.images as { id?: unknown; file?: unknown }[] | undefined;
  const file = Array.isArray(images) ? images.find((i) => i && i.id === one.image)?.file : undefined;
  const where = side === "right" || side === "left" ? `${side}-most quarter of the labelled columns`
    : `${side} quarter of the labelled rows`;
  const why = side === "right" ? ""
    : " (the right-most quarter held more than half of one class's labels: training would have lost most of that class)";
  return `Scored on the ${where} of ${typeof file === "string" ? file : "your one labelled image"}, kept out of training${why}. `
    + "With no image in the validation split, that is all a run can score; put an image you painted in the validation "
    + "split for scores on whole images.";
}

/**
 * The version's edge calibration, from its training provenance (``edge_calibration``): a sentence when it is on
 * (each prediction redraws object edges at the grey level of that image that best matches the network's own
 * objects) and when the run chose on its held-out labels (auto: both foreground IoUs); null when it is off as
 * asked, on painted membranes and for versions without it.
 */
export function edgesNote(provenance: Record<string, unknown> | undefined): string | null {
  const edges = provenance?.edge_calibration as
    { on?: unknown; off?: unknown; auto?: unknown; iou_fg_without?: unknown; iou_fg_with?: unknown } | undefined;
  if (!edges || typeof edges !== "object") return null;
  const without = edges.iou_fg_without, withIt = edges.iou_fg_with;
  const chosen = typeof without === "number" && typeof withIt === "number"
    ? ` (chosen on the held-out labels: foreground IoU ${without.toFixed(3)} without it, ${withIt.toFixed(3)} with)` : "";
  if (edges.on === true) {
    return `Edge calibration on${chosen}: each prediction redraws object edges, within one object size of the network's objects, at the `
      + "grey level of that image that best matches them (dim parts of cells on a dimmer image are kept, halos dropped; touching "
      + "objects stay apart). To keep the network's own edges, set \"Edge calibration\" to off on the Training page "
      + "(edge_calibration: false).";
  }
  if (chosen) {
    return `Edge calibration off${chosen}: predictions keep the network's own edges. Set "Edge calibration" to on `
      + "on the Training page to use it anyway (edge_calibration: true).";
  }
  if (typeof edges.off === "string" && edges.off.startsWith("auto:")) {
    return "Edge calibration off: auto had no held-out labels to choose on, so predictions keep the network's own edges.";
  }
  return null;  // off as asked or on painted membranes: the network's own edges, nothing to say
}

/**
 * The version's intensity gate, from its training provenance (``intensity_gate``): a sentence when it is on
 * (object pixels the threshold fitted on the strokes calls background are dropped) or when it was switched
 * off for a reason the user should know; null for versions without one and on painted membranes (the split
 * note says what happens there).
 */
export function gateNote(provenance: Record<string, unknown> | undefined): string | null {
  const gate = provenance?.intensity_gate as { weights?: unknown; off?: unknown } | undefined;
  if (!gate || typeof gate !== "object") return null;
  if (Array.isArray(gate.weights)) {
    return "Intensity gate on: predicted object pixels that the threshold fitted on your strokes calls background are dropped "
      + "(halos around bright objects go). For objects that are not brighter or darker than their surroundings, untick "
      + "\"intensity gate\" on the Training page (intensity_gate: false).";
  }
  if (typeof gate.off === "string" && !gate.off.includes("membranes")) return `Intensity gate off: ${gate.off}.`;
  return null;
}
