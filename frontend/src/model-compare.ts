/**
 * The Models page's one scores table and its lineage chart.
 *
 * Each version's own scores are the means of its per-image scores (GET /model-versions/{id}/metrics/),
 * with the number of images; a version with a parent gets ▲/▼ marks measured only on the images both
 * were scored on (GET /projects/{id}/model-versions/compare/?a=parent&b=version), and says how many.
 * Per-class IoU columns follow the project's classes; every dash has a tooltip saying why it is a dash.
 */
import { api, type Project } from "./api";
import { comparisonBlock, edgesNote, gateNote, heldOutNote, sizeNote, splitNote } from "./baselines";
import { drawLineChart } from "./chart";
import type { ModelVersion } from "./pages/training";
import { classMetric, comparisonNote, dashReason, firstMetricWithData, fmt, lineagePoints, METRIC_NAMES, DENSE_ONLY, type Comparison, type VersionMetrics } from "./scores";
import { h, showError, toast } from "./ui";

export { METRIC_NAMES };

/** The lineage of `v` oldest first, ending with `v` (the API lists ancestors nearest first). */
export function lineageOf(v: ModelVersion, all: ModelVersion[]): ModelVersion[] {
  const byNumber = new Map(all.map((x) => [x.number, x]));
  const chain = [...v.lineage].reverse().map((n) => byNumber.get(n)).filter((x): x is ModelVersion => !!x);
  return [...chain, v];
}

/** Metric keys of the table: the named metrics, then IoU per class (background first). */
export function tableMetrics(project: Project): Array<[string, string]> {
  const classes = [...project.classes].sort((a, b) => a.index - b.index);
  return [...Object.entries(METRIC_NAMES), ...classes.map((c): [string, string] => [classMetric(c.index), `IoU ${c.name}`])];
}

/** Every version's per-image metrics and, for versions with a parent, the comparison on shared images. */
export async function loadScores(pid: string, versions: ModelVersion[]): Promise<{ metrics: Map<number, VersionMetrics>; comparisons: Map<number, Comparison | null> }> {
  const metrics = new Map<number, VersionMetrics>();
  const comparisons = new Map<number, Comparison | null>();
  await Promise.all([
    ...versions.map(async (v) => {
      try {
        metrics.set(v.id, await api.get<VersionMetrics>(`/model-versions/${v.id}/metrics/`));
      } catch {
        /* shown as "not scored" */
      }
    }),
    ...versions.filter((v) => v.parent).map(async (v) => {
      try {
        comparisons.set(v.id, await api.get<Comparison>(`/projects/${pid}/model-versions/compare/?a=${v.parent}&b=${v.id}`));
      } catch {
        comparisons.set(v.id, null);
      }
    }),
  ]);
  return { metrics, comparisons };
}

function predictAllButton(v: ModelVersion): HTMLElement {
  return h("button", { "data-testid": `predict-all-${v.number}`, title: "predict every image of the project with this version (scores the validation/test images)", onclick: async () => {
    try {
      const preds = await api.post<unknown[]>(`/model-versions/${v.id}/predict/`, { all: true });
      toast(`v${v.number}: ${preds.length} prediction(s) queued; scores appear here when they finish.`, "ok");
    } catch (err) {
      showError(err, "Could not start the predictions");
    }
  } }, "Predict all");
}

export interface ScoresTableOptions {
  pid: string;
  project: Project;
  versions: ModelVersion[];
  metrics: Map<number, VersionMetrics>;
  comparisons: Map<number, Comparison | null>;
  canEdit: boolean;
  isOwner: boolean;
  onActivate: (v: ModelVersion) => void;
}

/** The one table: a row per version (own scores, ▲/▼ vs the parent on shared images), a note row under it. */
export function scoresTable(o: ScoresTableOptions): HTMLElement {
  const keys = tableMetrics(o.project);
  const th = (t: string, title = "") => h("th", { style: { textAlign: "left", paddingRight: "10px" }, title: title || null }, t);
  const table = h("table", { "data-testid": "models-table", class: "scores" },
    h("tr", {}, th("version"), th("from", "lineage, nearest first"), th("run"), th("scored on", "images this version was scored on"),
      ...keys.map(([k, name]) => th(name + (DENSE_ONLY.has(k) ? " *" : ""), DENSE_ONLY.has(k) ? "needs densely labelled images" : "")),
      th("created"), th("")));
  for (const v of o.versions) {
    const m = o.metrics.get(v.id);
    const cmp = o.comparisons.get(v.id) ?? null;
    const parent = o.versions.find((p) => p.id === v.parent);
    const all = m?.aggregate.all ?? {};
    const cells = keys.map(([k]) => {
      const own = all[k]?.mean;
      if (own === undefined) return h("td", { class: "not-scored", title: dashReason(k, m), "data-testid": `score-${v.number}-${k}` }, "–");
      const side = cmp && cmp.shared_images ? cmp.aggregate[k] : undefined;
      const mark = side ? h("span", { class: `cmp ${side.verdict}`, title: `on the ${side.n} image(s) both were scored on: v${v.number} ${fmt(side.b)}, v${parent?.number ?? "?"} ${fmt(side.a)}` },
        side.verdict === "better" ? "▲" : side.verdict === "worse" ? "▼" : "=") : null;
      return h("td", { "data-testid": `score-${v.number}-${k}`, "data-verdict": side?.verdict ?? null, title: `mean over ${all[k]?.n ?? "?"} image(s)` }, fmt(own), mark);
    });
    const activate = o.isOwner && !v.is_active
      ? h("button", { "data-testid": `activate-${v.number}`, onclick: () => o.onActivate(v) }, "Activate") : null;
    table.append(h("tr", { "data-testid": `model-row-${v.number}` },
      h("td", {}, `v${v.number}${v.name ? " " + v.name : ""} `, v.is_active ? h("span", { class: "badge ok", "data-testid": "model-active" }, "active") : null),
      h("td", { title: "lineage, nearest first" }, v.lineage.length ? v.lineage.map((n) => `v${n}`).join(" ← ") : "scratch"),
      h("td", {}, v.run_status ?? "uploaded"),
      h("td", { "data-testid": `scored-on-${v.number}` }, m && m.images.length ? `${m.images.length} image${m.images.length === 1 ? "" : "s"}` : "–"),
      ...cells,
      h("td", {}, new Date(v.created_at).toLocaleString()),
      h("td", {}, activate, " ", o.canEdit ? predictAllButton(v) : null, " ", h("a", { href: v.checkpoint_url, download: "", title: "the raw training checkpoint, for LabSeg (torch.jit.load cannot open it: see Export below for TorchScript and ONNX)" }, "checkpoint (raw)"))));
    const baselines = comparisonBlock(v.comparison, `model-baselines-${v.number}`);
    const note = parent ? h("span", { class: "muted", "data-testid": `compare-note-${v.number}` }, comparisonNote(parent.number, cmp)) : null;
    const split = splitNote(v.provenance);
    const splitLine = split ? h("p", { class: "muted", "data-testid": `model-split-note-${v.number}` }, split) : null;
    const gate = gateNote(v.provenance);
    const gateLine = gate ? h("p", { class: "muted", "data-testid": `model-gate-note-${v.number}` }, gate) : null;
    const edges = edgesNote(v.provenance);
    const edgesLine = edges ? h("p", { class: "muted", "data-testid": `model-edges-note-${v.number}` }, edges) : null;
    const size = sizeNote(v.provenance);
    const sizeLine = size ? h("p", { class: "muted", "data-testid": `model-size-note-${v.number}` }, size) : null;
    const heldOut = heldOutNote(v.provenance);
    const heldOutLine = heldOut ? h("p", { class: "muted", "data-testid": `model-heldout-note-${v.number}` }, heldOut) : null;
    if (note || baselines || splitLine || gateLine || edgesLine || sizeLine || heldOutLine) {
      table.append(h("tr", { class: "sub" }, h("td", {}), h("td", { colSpan: keys.length + 6 }, note, heldOutLine, splitLine, gateLine,
        edgesLine, sizeLine,
        baselines ? h("details", { open: Boolean(v.comparison?.unet_loses_to.length || v.comparison?.outline_loses_to?.length) }, h("summary", {}, "U-Net beside its baselines"), baselines) : null)));
    }
  }
  return table;
}

export const LEGEND = "Each score is the mean over the images that version was scored on (its validation/test images; \"scored on\" says how many). ▲ better, ▼ worse, = same as the parent, measured only on the images both were scored on. – not scored: hover it for why (no validation image had that class; a * metric needs a densely labelled image; the version has no scored image). Higher is better except for the errors. Scores written at the end of training come from one pass of the network; predictions, and the scores of images first scored by a prediction, average the 8 flips and rotations (images up to 16 Mpx by default), which usually scores a little higher.";

export function scoresLegend(): HTMLElement {
  return h("p", { class: "muted scores-legend", "data-testid": "scores-legend" }, LEGEND);
}

/** A chart of one metric along a version's lineage, opening on a metric that has data. */
export function lineageChart(project: Project, versions: ModelVersion[], metrics: Map<number, VersionMetrics>): HTMLElement {
  const keys = tableMetrics(project);
  const latest = versions.find((v) => v.is_active) ?? versions[0];
  const pickVersion = h("select", { "data-testid": "lineage-version" }, ...versions.map((v) => h("option", { value: String(v.id), selected: v.id === latest.id }, `v${v.number}`)));
  const pickMetric = h("select", { "data-testid": "lineage-metric" }, ...keys.map(([k, name]) => h("option", { value: k }, name)));
  const opening = firstMetricWithData(lineageOf(latest, versions), metrics, keys.map(([k]) => k));
  if (opening) pickMetric.value = opening;
  const canvas = h("canvas", { width: 520, height: 200, "data-testid": "lineage-chart" });
  const caption = h("span", { class: "muted", "data-testid": "lineage-points" });
  const redraw = () => {
    const v = versions.find((x) => String(x.id) === pickVersion.value) ?? latest;
    const pts = lineagePoints(lineageOf(v, versions), metrics, pickMetric.value);
    const name = keys.find(([k]) => k === pickMetric.value)?.[1] ?? pickMetric.value;
    drawLineChart(canvas, pts, { label: `${name} by version` });
    caption.textContent = pts.length ? pts.map(([n, y]) => `v${n}: ${y.toFixed(4)}`).join(", ") : "no scores along this lineage";
  };
  pickVersion.addEventListener("change", redraw);
  pickMetric.addEventListener("change", redraw);
  redraw();
  return h("section", { class: "panel", "data-testid": "model-compare" }, h("h2", {}, "A metric along the lineage"),
    h("p", { class: "muted" }, "Each point is that version's mean over its own scored images."),
    h("div", {}, "version ", pickVersion, " metric ", pickMetric), canvas, h("div", {}, caption));
}
