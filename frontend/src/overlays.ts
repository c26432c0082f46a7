/**
 * Predictions on the annotate page: overlays (prediction classes, instance outlines, uncertainty,
 * weight map) with the viewer's opacity/visibility controls, "Predict", "Accept prediction" into the
 * editor, and "Next most uncertain image"; on the project page, each image card's prediction thumbnail
 * and F1. Registered in src/extensions.ts (annotateHooks, imageGridHooks); no edits to the pages.
 *
 * Every overlay is a server PNG per region + level (the display endpoint's parameters):
 *   /api/v1/predictions/{id}/classes.png?style=colour   label colours, background transparent
 *   /api/v1/predictions/{id}/outlines.png               instance outlines, yellow
 *   /api/v1/predictions/{id}/uncertainty.png?style=colour  colour ramp, alpha = uncertainty
 *   /api/v1/images/{id}/weight-map.png                  training weight map (border term bright)
 */
import { api, ApiError } from "./api";
import { navigate } from "./router";
import { dialog, h, showError, toast } from "./ui";
import type { Region, RegionSource } from "./viewer";
import type { AnnotateContext } from "./annotate/context";
import { annotateUrl, type ImageGridContext } from "./pages/project";
import { reviewPanel, type Review } from "./review";

export interface Prediction {
  id: number;
  image: number;
  model_version: number;
  status: "queued" | "running" | "succeeded" | "failed";
  progress: number;
  counts: { instances?: number; instances_per_class?: Record<string, number>; mean_uncertainty?: number; pixels_per_class?: Record<string, number>; review?: Review };
  mean_uncertainty: number | null;
  error: string;
}

/**
 * "7 objects (nucleus 4, mitosis 3)": the total and, with more than one object class, the count of each
 * (`perClass` keyed by label class value, named by the project's classes).
 */
export function describeObjects(total: number | null | undefined, perClass: Record<string, number> | null | undefined,
  classes: Array<{ index: number; name: string }>): string {
  const n = total ?? 0;
  const head = `${n} object${n === 1 ? "" : "s"}`;
  const entries = Object.entries(perClass ?? {}).sort(([a], [b]) => Number(a) - Number(b));
  if (entries.length < 2) return head;
  const name = (k: string) => classes.find((c) => c.index === Number(k))?.name ?? `class ${k}`;
  return `${head} (${entries.map(([k, v]) => `${name(k)} ${v}`).join(", ")})`;
}

interface VersionRef {
  id: number;
  number: number;
  is_active: boolean;
}

/** Query string of a viewer region, as the display endpoint reads it. */
export function regionQuery(r: Region, extra: Record<string, string> = {}): string {
  return new URLSearchParams({ ...extra, region: `${r.x},${r.y},${r.w},${r.h}`, level: String(r.level) }).toString();
}

/** Overlay name -> URL maker, for a finished prediction (and the image, for the weight map). */
export function overlaySources(predictionId: number | null, imageId: number): Record<string, RegionSource | null> {
  const p = (file: string, extra: Record<string, string> = {}): RegionSource | null =>
    predictionId === null ? null : (r) => `/api/v1/predictions/${predictionId}/${file}?${regionQuery(r, extra)}`;
  return {
    prediction: p("classes.png", { style: "colour" }),
    outlines: p("outlines.png"),
    uncertainty: p("uncertainty.png", { style: "colour" }),
    "weight map": (r) => `/api/v1/images/${imageId}/weight-map.png?${regionQuery(r)}`,
  };
}

const LABELS: Record<string, string> = {
  prediction: "Prediction",
  outlines: "Outlines",
  uncertainty: "Uncertainty",
  "weight map": "Weight map",
};
const DEFAULT_OPACITY: Record<string, number> = { prediction: 0.45, outlines: 0.9, uncertainty: 0.6, "weight map": 0.6 };

export function setupPredictions(ctx: AnnotateContext): () => void {
  const { project, image, viewer, store, canEdit } = ctx;
  let current: Prediction | null = null;
  let timer: number | undefined;
  let disposed = false;

  // a fixed-width slot: "predicting… 45 %" and "v2 prediction: 12 objects" must not move the toolbar
  const statusEl = h("span", { class: "muted fixed-label prediction-status", "data-testid": "prediction-status" }, "");
  const toggles = new Map<string, HTMLButtonElement>();
  const toggle = (name: string) => {
    const on = viewer.overlayNames().includes(name);
    if (on) viewer.removeOverlay(name);
    else {
      const src = overlaySources(current?.status === "succeeded" ? current.id : null, image.id)[name];
      if (!src) return;
      viewer.setOverlay(name, src, { opacity: DEFAULT_OPACITY[name] });
    }
    refreshButtons();
  };
  for (const name of Object.keys(LABELS)) {
    const b = h("button", { class: "tool", "data-testid": `toggle-${name.replace(" ", "-")}`, title: `show/hide ${LABELS[name].toLowerCase()}`, onclick: () => toggle(name) }, LABELS[name]);
    toggles.set(name, b);
  }
  const predictBtn = h("button", { "data-testid": "predict", title: "predict this image with the active model version", onclick: () => void predict() }, "Predict");
  const acceptBtn = h("button", { "data-testid": "accept-prediction", title: "copy the prediction into the annotation (a new version) to correct it", onclick: () => void accept() }, "Accept prediction");
  const nextBtn = h("button", { "data-testid": "next-uncertain", title: "open the image where the model is least sure and few labels exist", onclick: () => void nextUncertain() }, "Next uncertain ▸");
  if (!canEdit) {
    predictBtn.disabled = true;
    acceptBtn.disabled = true;
  }
  ctx.addToolbar(...toggles.values(), predictBtn, acceptBtn, nextBtn, statusEl);

  const refreshButtons = () => {
    const ready = current?.status === "succeeded";
    toggles.forEach((b, name) => {
      b.classList.toggle("active", viewer.overlayNames().includes(name));
      b.disabled = name !== "weight map" && !ready;
    });
    acceptBtn.disabled = !canEdit || !ready;
  };

  const describe = (p: Prediction | null): string => {
    if (!p) return "no prediction yet";
    if (p.status === "succeeded") {
      const u = p.mean_uncertainty ?? p.counts.mean_uncertainty;
      return `v${versionNumber(p.model_version)} prediction: ${describeObjects(p.counts.instances, p.counts.instances_per_class, project.classes)}` + (u !== undefined && u !== null ? `, mean uncertainty ${u.toFixed(3)}` : "");
    }
    if (p.status === "failed") return `prediction failed: ${p.error}`;
    return `predicting… ${Math.round(p.progress * 100)} %`;
  };
  let versions: VersionRef[] = [];
  const versionNumber = (id: number) => versions.find((v) => v.id === id)?.number ?? id;

  const review = reviewPanel(ctx);
  const show = (p: Prediction | null) => {
    const was = current;
    current = p;
    statusEl.textContent = describe(p);
    statusEl.title = statusEl.textContent; // the slot has a fixed width
    statusEl.dataset.status = p?.status ?? "none";
    if (p && p.status === "succeeded" && (!was || was.id !== p.id || was.status !== "succeeded")) {
      // new data: re-point the prediction overlays that are on
      const sources = overlaySources(p.id, image.id);
      for (const name of ["prediction", "outlines", "uncertainty"]) {
        if (viewer.overlayNames().includes(name)) viewer.setOverlay(name, sources[name], {});
      }
    }
    refreshButtons();
    review.update(p?.status === "succeeded" ? p.id : null, p?.status === "succeeded" ? p.counts.review : null);
    if (p && (p.status === "queued" || p.status === "running")) poll(p.id);
  };

  const poll = (id: number) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      if (disposed) return;
      try {
        show(await api.get<Prediction>(`/predictions/${id}/`));
      } catch (err) {
        statusEl.textContent = `could not read the prediction: ${(err as Error).message}`;
      }
    }, 1000);
  };

  const load = async () => {
    try {
      const [preds, vs] = await Promise.all([
        api.get<Prediction[]>(`/images/${image.id}/predictions/`),
        api.get<VersionRef[]>(`/projects/${project.id}/model-versions/`).catch(() => [] as VersionRef[]),
      ]);
      versions = Array.isArray(vs) ? vs : [];
      const active = versions.find((v) => v.is_active);
      const pick = preds.find((p) => active && p.model_version === active.id && p.status === "succeeded")
        ?? preds.find((p) => p.status === "succeeded") ?? preds[0] ?? null;
      show(pick);
    } catch (err) {
      statusEl.textContent = `predictions unavailable: ${(err as Error).message}`;
    }
  };

  const predict = async () => {
    const active = versions.find((v) => v.is_active);
    if (!active) {
      toast("No active model version yet: train one (Training page) or activate one (Models page).", "error");
      return;
    }
    try {
      const [p] = await api.post<Prediction[]>(`/model-versions/${active.id}/predict/`, { image_ids: [image.id] });
      show(p);
    } catch (err) {
      showError(err, "Could not start the prediction");
    }
  };

  const accept = async () => {
    if (!current || current.status !== "succeeded") return;
    if (store.strokes.length) {
      const choice = await dialog("Replace your unsaved strokes?",
        "Accepting the prediction replaces the annotation with the prediction (the old one stays in the history). Your unsaved strokes are dropped.",
        [{ label: "Cancel", value: "cancel" }, { label: "Accept prediction", value: "ok", primary: true, testid: "accept-confirm" }]);
      if (choice !== "ok") return;
    }
    try {
      const res = await api.post<{ version: number }>(`/predictions/${current.id}/accept/`, { version: store.version });
      await store.load();
      viewer.setHideBackground(true); // the predicted background covers the whole image: show the objects
      toast(`Prediction accepted as annotation version ${res.version}: correct it and save.`, "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        toast("Someone saved this annotation meanwhile: reload the page and accept again.", "error", 8000);
      } else {
        showError(err, "Could not accept the prediction");
      }
    }
  };

  const nextUncertain = async () => {
    try {
      const next = await api.get<{ image: number }>(`/projects/${project.id}/images/next-uncertain/?exclude=${image.id}`);
      navigate(annotateUrl(project.id, next.image));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) toast("No other image has a prediction with an uncertainty map yet.", "info");
      else showError(err, "Could not find the next image");
    }
  };

  ctx.addPanel(h("p", { class: "muted small", "data-testid": "overlay-help" },
    "Overlays: prediction classes, instance outlines, uncertainty (bright = unsure; label there first) and the training weight map (bright ridges between touching objects)."));
  refreshButtons();
  void load();
  return () => {
    disposed = true;
    window.clearTimeout(timer);
  };
}

// --- image grid: prediction thumbnails and per-image F1 --------------------------------------------
interface GridPrediction {
  image: number;
  prediction: number;
  thumbnail_url: string;
  instances: number | null;
  instances_per_class?: Record<string, number> | null;
  /** objects that look merged (the annotate page's "Objects to check"); null: no list */
  to_check?: number | null;
  f1_iou50: number | null;
  pixel_error: number | null;
}

/** Add the active version's prediction thumbnail and F1 to each card of the project page's grid (after every redraw). */
export function decorateImageGrid(ctx: ImageGridContext): void {
  let rows = new Map<number, GridPrediction>();
  let version = 0;
  let classes: Array<{ index: number; name: string }> = [];
  const decorate = () => {
    ctx.grid.querySelectorAll<HTMLElement>(".image-card[data-testid^=image-]").forEach((card) => {
      const id = Number(card.dataset.testid!.slice("image-".length));
      const row = rows.get(id);
      if (!row || card.querySelector(".prediction-thumb")) return;
      const f1 = row.f1_iou50 !== null ? `F1 ${row.f1_iou50.toFixed(2)}` : row.pixel_error !== null ? `pixel error ${row.pixel_error.toFixed(3)}` : "";
      card.append(h("div", { class: "prediction-thumb row", "data-testid": `prediction-thumb-${id}`, title: `prediction of model v${version}` },
        h("img", { src: row.thumbnail_url, alt: "prediction", loading: "lazy", style: { width: "48px", height: "48px", objectFit: "contain", background: "#111" } }),
        h("span", { class: "muted", "data-testid": `prediction-count-${id}` }, `v${version}: ${describeObjects(row.instances, row.instances_per_class, classes)}`),
        f1 ? h("span", { class: "badge", "data-testid": `image-f1-${id}` }, f1) : null,
        row.to_check ? h("span", { class: "badge warn", "data-testid": `image-to-check-${id}`, title: "objects of this prediction that look like several merged: open the image and step through 'Objects to check'" }, `${row.to_check} to check`) : null));
    });
  };
  ctx.onDraw(decorate);
  void api.get<{ model_version: { number: number } | null; classes?: Array<{ index: number; name: string }>; images: GridPrediction[] }>(`/projects/${ctx.projectId}/predictions/`)
    .then((res) => {
      version = res.model_version?.number ?? 0;
      classes = res.classes ?? [];
      rows = new Map(res.images.map((r) => [r.image, r]));
      decorate();
    })
    .catch(() => undefined); // the grid works without predictions
}
