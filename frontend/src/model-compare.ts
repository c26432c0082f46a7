/**
 * Models page additions: each version's scores beside its parent's (better / worse marked, from
 * GET /projects/{id}/model-versions/compare/?a=parent&b=version) and a chart of a chosen metric
 * along a version's lineage (from GET /model-versions/{id}/metrics/).
 *
 * `modelComparisonSection(projectId)` builds the section; it is added to the models page through
 * `modelsSections` (src/extensions.ts).
 */
import { api } from "./api";
import { drawLineChart, type Point } from "./chart";
import { errorBlock, h, showError, toast } from "./ui";

interface VersionRow {
  id: number;
  number: number;
  name: string;
  parent: number | null;
  lineage: number[];
  is_active: boolean;
}
interface Side {
  a: number;
  b: number;
  delta: number;
  verdict: "better" | "worse" | "same";
}
interface Comparison {
  aggregate: Record<string, Side>;
}
interface VersionMetrics {
  aggregate: { all: Record<string, { mean?: number; n?: number; value?: number }> };
  dense_only_metrics: string[];
}

/** Metric keys with a readable name; dense-only ones are scored only on fully labelled images. */
export const METRIC_NAMES: Record<string, string> = {
  f1_iou50: "F1 @ IoU 0.5",
  mean_iou: "mean IoU",
  iou_fg: "foreground IoU",
  pixel_error: "pixel error",
  rand_error: "Rand error (1 − Rand index)",
  adapted_rand_error: "adapted Rand error (ISBI)",
  warping_error: "warping error",
};
const DENSE_ONLY = new Set(["f1_iou50", "rand_error", "adapted_rand_error", "warping_error"]);

export function fmt(v: number | undefined | null): string {
  return v === undefined || v === null ? "–" : v.toFixed(4);
}

/** The lineage of `v` oldest first, ending with `v` (the API lists ancestors nearest first). */
export function lineageOf(v: VersionRow, all: VersionRow[]): VersionRow[] {
  const byNumber = new Map(all.map((x) => [x.number, x]));
  const chain = [...v.lineage].reverse().map((n) => byNumber.get(n)).filter((x): x is VersionRow => !!x);
  return [...chain, v];
}

/** Points [version number, value] of `metric` along a lineage (versions without the score are skipped). */
export function lineagePoints(chain: VersionRow[], metrics: Map<number, VersionMetrics>, metric: string): Point[] {
  const pts: Point[] = [];
  for (const v of chain) {
    const m = metrics.get(v.id)?.aggregate.all[metric];
    if (m && m.mean !== undefined) pts.push([v.number, m.mean]);
  }
  return pts;
}

/** "Predict all": queue this version's prediction of every image of the project (annotators, owners). */
function predictAllButton(v: VersionRow): HTMLElement {
  return h("button", { "data-testid": `predict-all-${v.number}`, title: "predict every image of the project with this version (scores the validation/test images)", onclick: async () => {
    try {
      const preds = await api.post<unknown[]>(`/model-versions/${v.id}/predict/`, { all: true });
      toast(`v${v.number}: ${preds.length} prediction(s) queued; scores appear here when they finish.`, "ok");
    } catch (err) {
      showError(err, "Could not start the predictions");
    }
  } }, "Predict all");
}

export function modelComparisonSection(projectId: string | number): HTMLElement {
  const section = h("section", { class: "panel", "data-testid": "model-compare" }, h("h2", {}, "Scores against the parent version"));
  void fill(section, projectId);
  return section;
}

async function fill(section: HTMLElement, pid: string | number): Promise<void> {
  let versions: VersionRow[];
  try {
    versions = await api.get<VersionRow[]>(`/projects/${pid}/model-versions/`);
  } catch (err) {
    section.append(errorBlock(err, "Could not load the model versions"));
    return;
  }
  if (!versions.length) {
    section.append(h("p", { class: "muted" }, "No versions yet."));
    return;
  }
  const metrics = new Map<number, VersionMetrics>();
  await Promise.all(versions.map(async (v) => {
    try {
      metrics.set(v.id, await api.get<VersionMetrics>(`/model-versions/${v.id}/metrics/`));
    } catch {
      /* a version without scores */
    }
  }));
  const keys = Object.keys(METRIC_NAMES);
  const table = h("table", { "data-testid": "compare-table" },
    h("tr", {}, h("th", {}, "version"), h("th", {}, "parent"), ...keys.map((k) => h("th", { title: DENSE_ONLY.has(k) ? "needs densely labelled images" : "" }, METRIC_NAMES[k] + (DENSE_ONLY.has(k) ? " *" : ""))), h("th", {}, "")));
  for (const v of versions) {
    const parent = versions.find((p) => p.id === v.parent);
    let cmp: Comparison | null = null;
    if (parent) {
      try {
        cmp = await api.get<Comparison>(`/projects/${pid}/model-versions/compare/?a=${parent.id}&b=${v.id}`);
      } catch {
        cmp = null;
      }
    }
    const own = metrics.get(v.id)?.aggregate.all ?? {};
    table.append(h("tr", { "data-testid": `compare-row-${v.number}` },
      h("td", {}, `v${v.number}`),
      h("td", {}, parent ? `v${parent.number}` : "–"),
      ...keys.map((k) => {
        const side = cmp?.aggregate[k];
        if (!side) return h("td", {}, fmt(own[k]?.mean));
        const mark = side.verdict === "better" ? "▲" : side.verdict === "worse" ? "▼" : "=";
        return h("td", { class: `verdict ${side.verdict}`, "data-verdict": side.verdict, title: `parent ${fmt(side.a)}, change ${side.delta >= 0 ? "+" : ""}${side.delta.toFixed(4)}`, style: { color: side.verdict === "better" ? "#3fb950" : side.verdict === "worse" ? "#f85149" : "" } },
          `${fmt(side.b)} ${mark} `, h("span", { class: "muted" }, `(${fmt(side.a)})`));
      }),
      h("td", {}, predictAllButton(v))));
  }
  const note = h("p", { class: "muted" }, "▲ better than the parent, ▼ worse (parent's score in brackets). * needs densely labelled ground truth: skipped on images with sparse strokes.");

  // --- chart of one metric along a lineage ---------------------------------------------------
  const latest = versions.find((v) => v.is_active) ?? versions[0];
  const pickVersion = h("select", { "data-testid": "lineage-version" }, ...versions.map((v) => h("option", { value: String(v.id), selected: v.id === latest.id }, `v${v.number}`)));
  const pickMetric = h("select", { "data-testid": "lineage-metric" }, ...keys.map((k) => h("option", { value: k }, METRIC_NAMES[k])));
  const canvas = h("canvas", { width: 520, height: 200, "data-testid": "lineage-chart" });
  const caption = h("span", { class: "muted", "data-testid": "lineage-points" });
  const redraw = () => {
    const v = versions.find((x) => String(x.id) === pickVersion.value) ?? latest;
    const pts = lineagePoints(lineageOf(v, versions), metrics, pickMetric.value);
    drawLineChart(canvas, pts, { label: `${METRIC_NAMES[pickMetric.value]} by version` });
    caption.textContent = pts.length ? pts.map(([n, y]) => `v${n}: ${y.toFixed(4)}`).join(", ") : "no scores along this lineage";
  };
  pickVersion.addEventListener("change", redraw);
  pickMetric.addEventListener("change", redraw);
  section.append(table, note, h("h3", {}, "A metric along the lineage"), h("div", {}, "version ", pickVersion, " metric ", pickMetric), canvas, h("div", {}, caption));
  redraw();
}
