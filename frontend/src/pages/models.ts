/** Models page (/projects/:id/models): versions with lineage, run status, key metrics, activate, download. */
import { api, type Project } from "../api";
import { comparisonBlock } from "../baselines";
import { Hook } from "../hooks";
import { registerRoute } from "../router";
import { addProjectNavLink, append, errorBlock, h, renderNav, showError, toast } from "../ui";
import { loadProject } from "./project";
import type { ModelVersion } from "./training";

addProjectNavLink((pid) => ({ label: "Models", href: `/projects/${pid}/models`, testid: "nav-models" }));

/** What a section added to the Models page gets: the project id, the versions (newest first), the viewer's role. */
export interface ModelsContext {
  projectId: string;
  versions: ModelVersion[];
  role: string | null | undefined;
  reload: () => Promise<void>;
}

/**
 * Sections below the versions table (e.g. the comparison of scores vs the parent), registered in
 * src/extensions.ts: `modelsSections.register("name", (ctx) => h("div", {}, ...))`; each is rendered
 * again after every reload of the list.
 */
export const modelsSections = new Hook<ModelsContext, Node | null>("models page");

/** Metrics shown as columns, with whether lower is better. */
const METRICS: Array<[string, string, boolean]> = [
  ["f1_iou50", "F1 @ IoU 0.5", false],
  ["mean_iou", "mean IoU", false],
  ["pixel_error", "pixel error", true],
  ["adapted_rand_error", "adapted Rand error", true],
  ["warping_error", "warping error", true],
];

function fmt(v: number | undefined): string {
  return v === undefined ? "–" : v.toFixed(4);
}

async function renderModels(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const pid = params.projectId;
  renderNav(pid);
  const body = h("div", { "data-testid": "models-list" });
  let project: Project;
  try {
    project = await loadProject(pid);
  } catch (err) {
    root.append(errorBlock(err, "Could not load the project"));
    return;
  }
  renderNav(pid, project.name);
  const isOwner = project.my_role === "owner";
  const load = async () => {
    let versions: ModelVersion[];
    try {
      versions = await api.get<ModelVersion[]>(`/projects/${pid}/model-versions/`);
    } catch (err) {
      body.replaceChildren(errorBlock(err, "Could not load the model versions"));
      return;
    }
    if (!versions.length) {
      body.replaceChildren(h("p", { class: "muted" }, "No model yet. ", h("a", { href: `/projects/${pid}/train` }, "Train one"), "."));
      return;
    }
    const best = new Map<string, number>();
    for (const [key, , lower] of METRICS) {
      const vals = versions.map((v) => v.metrics[key]).filter((x) => x !== undefined);
      if (vals.length) best.set(key, lower ? Math.min(...vals) : Math.max(...vals));
    }
    const table = h("table", { "data-testid": "models-table" },
      h("tr", {}, ...["version", "from", "run", ...METRICS.map((m) => m[1]), "created", ""].map((t) => h("th", { style: { textAlign: "left", paddingRight: "12px" } }, t))));
    for (const v of versions) {
      const activate = isOwner && !v.is_active
        ? h("button", { "data-testid": `activate-${v.number}`, onclick: async () => {
          try {
            await api.post(`/model-versions/${v.id}/activate/`);
            toast(`Version ${v.number} is now active`, "ok");
            await load();
          } catch (err) {
            showError(err, "Could not activate");
          }
        } }, "Activate")
        : null;
      table.append(h("tr", { "data-testid": `model-row-${v.number}` },
        h("td", {}, `v${v.number}${v.name ? " " + v.name : ""} `, v.is_active ? h("span", { class: "badge ok", "data-testid": "model-active" }, "active") : null),
        h("td", { title: "lineage, nearest first" }, v.lineage.length ? v.lineage.map((n) => `v${n}`).join(" ← ") : "scratch"),
        h("td", {}, v.run_status ?? "uploaded"),
        ...METRICS.map(([key]) => h("td", { style: { fontWeight: v.metrics[key] !== undefined && best.get(key) === v.metrics[key] && versions.length > 1 ? "700" : "400" } }, fmt(v.metrics[key]))),
        h("td", {}, new Date(v.created_at).toLocaleString()),
        h("td", {}, activate, " ", h("a", { href: v.checkpoint_url, download: "", title: "the raw training checkpoint, for LabSeg (torch.jit.load cannot open it: see Export below for TorchScript and ONNX)" }, "checkpoint (raw)"))));
      const cmp = comparisonBlock(v.comparison, `model-baselines-${v.number}`);
      if (cmp) table.append(h("tr", {}, h("td", {}), h("td", { colSpan: METRICS.length + 4 }, cmp)));
    }
    body.replaceChildren(table, h("p", { class: "muted" }, "Scores are measured on the validation images (or held-out labels). Bold: best. Under each version: a threshold and a random forest fitted by the same run on the same labels, scored on the same images."));
    const ctx: ModelsContext = { projectId: pid, versions, role: project.my_role, reload: load };
    for (const node of modelsSections.run(ctx, (err) => showError(err, "A section of this page failed"))) {
      if (node) body.append(node);
    }
  };
  append(root, h("h1", {}, "Model versions"), body);
  await load();
}

registerRoute("/projects/:projectId/models", renderModels);
