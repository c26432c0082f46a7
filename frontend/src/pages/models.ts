/** Models page (/projects/:id/models): versions with lineage, run status, key metrics, activate, download. */
import { api, type Project } from "../api";
import { lineageChart, loadScores, scoresLegend, scoresTable } from "../model-compare";
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
 * Sections below the scores table and the lineage chart, registered in
 * src/extensions.ts: `modelsSections.register("name", (ctx) => h("div", {}, ...))`; each is rendered
 * again after every reload of the list.
 */
export const modelsSections = new Hook<ModelsContext, Node | null>("models page");

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
  const canEdit = isOwner || project.my_role === "annotator";
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
    const { metrics, comparisons } = await loadScores(pid, versions);
    const onActivate = async (v: ModelVersion) => {
      try {
        await api.post(`/model-versions/${v.id}/activate/`);
        toast(`Version ${v.number} is now active`, "ok");
        await load();
      } catch (err) {
        showError(err, "Could not activate");
      }
    };
    body.replaceChildren(scoresTable({ pid, project, versions, metrics, comparisons, canEdit, isOwner, onActivate: (v) => void onActivate(v) }), scoresLegend(),
      lineageChart(project, versions, metrics));
    const ctx: ModelsContext = { projectId: pid, versions, role: project.my_role, reload: load };
    for (const node of modelsSections.run(ctx, (err) => showError(err, "A section of this page failed"))) {
      if (node) body.append(node);
    }
  };
  append(root, h("h1", {}, "Model versions"), body);
  await load();
}

registerRoute("/projects/:projectId/models", renderModels);
