/**
 * "Objects to check" on the annotate page: the objects of the shown prediction that look like several
 * merged (`Prediction.counts.review`, from labseg/ml/review.py: large for their kind, or large and not
 * convex), one at a time: the view centres on the object and a dashed box marks it, so the user paints a
 * short background line where the objects touch and trains again. Few strokes rarely say where touching
 * objects part; on the real benchmark sets those lines are what took the scribble-trained U-Net from
 * merged colonies to separate objects. Used by src/overlays.ts (it owns the shown prediction).
 */
import { h } from "./ui";
import type { AnnotateContext } from "./annotate/context";

export interface ReviewObject {
  id: number;
  /** x, y, w, h in image pixels */
  bbox: [number, number, number, number];
  area: number;
  solidity: number;
  area_ratio: number;
  reason: string;
}

export interface Review {
  total?: number;
  objects?: ReviewObject[];
  skipped?: string;
}

export const CHECK_OVERLAY = "object to check";

/** The panel's sentence for a prediction's review (undefined: a prediction made before reviews existed). */
export function describeReview(r: Review | undefined | null): string {
  if (!r) return "This prediction has no list of objects to check (predict again to get one).";
  if (r.skipped) return `No objects to check: ${r.skipped}.`;
  const total = r.total ?? 0;
  if (total === 0) return "No object of this prediction looks like several merged.";
  const shown = r.objects?.length ?? 0;
  const more = shown < total ? ` (the ${shown} largest shown)` : "";
  return `${total} object${total === 1 ? "" : "s"} of this prediction look${total === 1 ? "s" : ""} like several merged${more}: ` +
    "where two objects touch, paint a short background line between them, then train again.";
}

/**
 * The view that shows `bbox` centred with its surroundings: the box and a margin of its own size on every
 * side fill the view, zoomed in at most to `maxScale` screen px per image px.
 */
export function viewFor(bbox: [number, number, number, number], viewW: number, viewH: number, maxScale = 8): { scale: number; offsetX: number; offsetY: number } {
  const [x, y, w, ht] = bbox;
  const spanW = Math.max(3 * w, 16);
  const spanH = Math.max(3 * ht, 16);
  const scale = Math.min(maxScale, viewW / spanW, viewH / spanH);
  const cx = x + w / 2;
  const cy = y + ht / 2;
  return { scale, offsetX: viewW / 2 - cx * scale, offsetY: viewH / 2 - cy * scale };
}

/**
 * A dashed box around `bbox` as an image overlay: the canvas and the image rectangle it covers (a margin
 * of 4 px or a tenth of the box). The canvas's longer side is `side` px whatever the box (a small box is
 * drawn sharp when zoomed in, the box of a whole merged colony scaled down), its line a fixed share of it.
 */
export function outlineRect(bbox: [number, number, number, number], side = 512): { rect: { x: number; y: number; w: number; h: number }; canvasW: number; canvasH: number; line: number } {
  const [x, y, w, ht] = bbox;
  const pad = Math.max(4, Math.round(Math.max(w, ht) / 10));
  const rect = { x: x - pad, y: y - pad, w: w + 2 * pad, h: ht + 2 * pad };
  const k = side / Math.max(rect.w, rect.h);
  const canvasW = Math.max(8, Math.round(rect.w * k));
  const canvasH = Math.max(8, Math.round(rect.h * k));
  return { rect, canvasW, canvasH, line: Math.max(1.5, Math.min(canvasW, canvasH) / 40) };
}

function outlineCanvas(bbox: [number, number, number, number]): { canvas: HTMLCanvasElement; rect: { x: number; y: number; w: number; h: number } } {
  const o = outlineRect(bbox);
  const canvas = document.createElement("canvas");
  canvas.width = o.canvasW;
  canvas.height = o.canvasH;
  const g = canvas.getContext("2d")!;
  g.lineWidth = o.line;
  g.setLineDash([4 * o.line, 2 * o.line]);
  g.strokeStyle = "#00e5ff";
  g.strokeRect(o.line, o.line, o.canvasW - 2 * o.line, o.canvasH - 2 * o.line);
  return { canvas, rect: o.rect };
}

/** The panel; `update` with each newly shown prediction's review (null: none shown). */
export function reviewPanel(ctx: AnnotateContext): { update(predictionId: number | null, review: Review | undefined | null): void } {
  const { viewer } = ctx;
  let objects: ReviewObject[] = [];
  let index = -1;
  let shownFor: number | null = null;
  const text = h("p", { class: "muted small", "data-testid": "review-text" }, "");
  const current = h("span", { class: "muted small", "data-testid": "review-current" }, "");
  const prev = h("button", { "data-testid": "review-prev", title: "previous object to check (,)", onclick: () => go(-1) }, "◂");
  const next = h("button", { "data-testid": "review-next", title: "show the next object to check (.)", onclick: () => go(1) }, "Show next ▸");
  const panel = h("div", { class: "review-panel", "data-testid": "review-panel", hidden: true },
    h("h4", {}, "Objects to check"), text, h("div", { class: "row" }, prev, next, current));
  ctx.addPanel(panel);

  const refresh = () => {
    prev.disabled = objects.length === 0 || index <= 0;
    next.disabled = objects.length === 0 || index >= objects.length - 1;
    next.textContent = index < 0 ? "Show the first ▸" : "Show next ▸";
    const o = objects[index];
    current.textContent = o ? `${index + 1} / ${objects.length}: ${o.reason}` : "";
  };

  const go = (step: number) => {
    if (!objects.length) return;
    index = Math.max(0, Math.min(objects.length - 1, index + step));
    const o = objects[index];
    const v = viewFor(o.bbox, viewer.viewWidth, viewer.viewHeight);
    viewer.setView(v.scale, v.offsetX, v.offsetY);
    const { canvas, rect } = outlineCanvas(o.bbox);
    viewer.setImageOverlay(CHECK_OVERLAY, canvas, rect, { opacity: 1 });
    refresh();
  };

  ctx.keys.add({ keys: [".", ","], label: ". / ,", help: "show the next / previous object to check (objects that look merged)", when: () => objects.length > 0, run: (e) => go(e.key === "," ? -1 : 1) });

  return {
    update(predictionId, review) {
      if (predictionId === shownFor) return;
      shownFor = predictionId;
      viewer.removeOverlay(CHECK_OVERLAY);
      objects = review?.objects ?? [];
      index = -1;
      panel.hidden = predictionId === null;
      text.textContent = describeReview(review);
      refresh();
    },
  };
}
