/**
 * Training page (/projects/:id/train): start a run (steps, time budget, parent version), watch its live
 * progress bar, loss curve and ETA, cancel it, read its error; the project's earlier runs below.
 */
import { api, ApiError, type Project } from "../api";
import { comparisonBlock, edgesNote, gateNote, heldOutNote, sizeNote, splitNote, type Comparison } from "../baselines";

/** The edge calibration choices of the Training form and the ``edge_calibration`` each sends (null: auto). */
const EDGE_CHOICES: [string, string][] = [["off", "off"], ["auto", "auto (held-out labels choose)"], ["on", "on"]];
const EDGE_CONFIG: Record<string, boolean | null> = { off: false, auto: null, on: true };
const EDGE_DEFAULT = "auto";
import { drawLineChart, type Point } from "../chart";
import { registerRoute } from "../router";
import { addProjectNavLink, append, errorBlock, h, renderNav, showError, toast } from "../ui";
import { progressText, roundMarkers, validationSeries, type RunRound } from "../rounds";
import { loadProject } from "./project";

export interface TrainingRun {
  id: number;
  project: number;
  parent_version: number | null;
  config: Record<string, unknown>;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  is_active: boolean;
  step: number;
  total_steps: number;
  progress: number;
  loss_curve: Point[];
  rounds: RunRound[];
  elapsed_seconds: number;
  eta_seconds: number | null;
  message: string;
  error: string;
  cancel_requested: boolean;
  attempts: number;
  created_by: string | null;
  created_at: string;
  finished_at: string | null;
  model_version: number | null;
}

export interface ModelVersion {
  id: number;
  number: number;
  name: string;
  run: number | null;
  run_status: string | null;
  parent: number | null;
  lineage: number[];
  is_active: boolean;
  metrics: Record<string, number>;
  baselines: Record<string, Record<string, number>>;
  comparison: Comparison | null;
  checkpoint_url: string;
  created_at: string;
  provenance: Record<string, unknown>;
}

const POLL_MS = 1000;
/** New versions (another member's run, an upload) reach the "Start from" list within this time. */
const VERSIONS_POLL_MS = 5000;

addProjectNavLink((pid) => ({ label: "Training", href: `/projects/${pid}/train`, testid: "nav-train" }));

/** "1 h 02 min", "3 min 05 s", "12 s". */
export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

/** The "Start from" choices: the active version (default), from scratch, every other version. */
function parentOptions(versions: ModelVersion[]): HTMLOptionElement[] {
  const active = versions.find((v) => v.is_active);
  return [
    h("option", { value: "" }, active ? `active version (v${active.number})` : "from scratch (no version yet)"),
    ...(active ? [h("option", { value: "scratch" }, "from scratch")] : []),
    ...versions.filter((v) => !v.is_active).map((v) => h("option", { value: String(v.id) }, `v${v.number}${v.name ? " " + v.name : ""}`)),
  ];
}

function startForm(pid: string, project: Project, versions: ModelVersion[], onStarted: (run: TrainingRun) => void): { el: HTMLElement; setVersions: (v: ModelVersion[]) => void } {
  const steps = h("input", { type: "number", min: "1", value: "800", "data-testid": "train-steps" });
  const minutes = h("input", { type: "number", min: "0.1", step: "0.5", value: "5", "data-testid": "train-minutes" });
  const selfTraining = h("input", { type: "checkbox", checked: false, "data-testid": "train-self-training" });
  const gate = h("input", { type: "checkbox", checked: true, "data-testid": "train-intensity-gate" });
  const intensitySplit = h("input", { type: "checkbox", checked: true, "data-testid": "train-intensity-split" });
  const edges = h("select", { "data-testid": "train-edge-calibration" },
    ...EDGE_CHOICES.map(([value, text]) => h("option", { value }, text)));
  edges.value = EDGE_DEFAULT;
  const parent = h("select", { "data-testid": "train-parent" }, ...parentOptions(versions));
  let shownKey = versions.map((v) => `${v.id}:${v.is_active}`).join(",");
  const setVersions = (next: ModelVersion[]) => {
    const key = next.map((v) => `${v.id}:${v.is_active}`).join(",");
    if (key === shownKey) return;
    shownKey = key;
    const chosen = parent.value;
    parent.replaceChildren(...parentOptions(next));
    if ([...parent.options].some((o) => o.value === chosen)) parent.value = chosen;
  };
  const button = h("button", { class: "primary", "data-testid": "train-start" }, "Train");
  button.addEventListener("click", async () => {
    const body: Record<string, unknown> = { config: {
      steps: Number(steps.value), max_seconds: Math.round(Number(minutes.value) * 60), self_training: selfTraining.checked ? 1 : 0,
      intensity_gate: gate.checked, intensity_split: intensitySplit.checked, edge_calibration: EDGE_CONFIG[edges.value],
    } };
    if (parent.value === "scratch") body.from_scratch = true;
    else if (parent.value) body.parent_version = Number(parent.value);
    button.disabled = true;
    try {
      onStarted(await api.post<TrainingRun>(`/projects/${pid}/training-runs/`, body));
      toast("Training started", "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.body.run) {
        toast("A training run is already going for this project.", "info");
        onStarted(err.body.run as TrainingRun);
      } else showError(err, "Could not start training");
    } finally {
      button.disabled = false;
    }
  });
  const el = h("div", { class: "panel", "data-testid": "train-form" },
    h("h2", {}, "Train a new version"),
    h("p", { class: "muted" }, "Uses every image with painted labels; images in the validation split are scored, not trained on."),
    h("label", {}, "Steps per round ", steps), " ", h("label", {}, "Time budget (min) ", minutes), " ", h("label", {}, "Start from ", parent), " ",
    h("label", { title: "With strokes only: after the first round the model labels the rest of the image itself (pixels where two predicted objects touch become background) and trains a second round on that. It can teach where touching objects part, but on the real benchmark images it did not help on average, so it is off by default; it takes twice the steps within the same time budget." },
      selfTraining, " self-training round"), " ",
    h("label", { title: "After training, predicted object pixels that a threshold fitted on your strokes calls background are dropped: the halo a network paints around bright objects. Used only when your strokes lie inside objects (not outlined, not membranes) and the threshold keeps at least 90 % of what you painted as object. Untick it for objects that are not brighter or darker than their surroundings." },
      gate, " intensity gate"), " ",
    h("label", { title: "Where the prediction merges touching objects into colonies much larger than the objects (rods side by side), the watershed that splits them adds the grey values, projected so objects are bright (dark rods in phase contrast are inverted): a bright or dim line between two objects becomes a border. Not used when your background strokes are membranes or when you painted whole objects (their size sets the split). Untick it to split by shape alone." },
      intensitySplit, " intensity split"), " ",
    h("label", { title: "Each prediction redraws object edges, within one object size of the network's objects, at the one grey level of that image that best matches the objects the network found: on a dimmer or brighter image than the one you painted, dim parts of cells are kept and halos around bright ones dropped; a pixel that would join two objects stays background. Not used when your background strokes are membranes. Whether it suits your objects depends on how you outline them (generous whole cells with dim cytoplasm: yes; tight nuclei: no). Auto (the default): the run scores its held-out labels (the validation images, or a quarter of your labels) without and with it and keeps it only where it matches them better; On / Off: always / never." },
      "Edge calibration ", edges), " ", button,
    h("p", { class: "muted" }, "Self-training adds a round: the model labels the unlabelled pixels itself and trains the same number of steps again, so a run of 150 steps a round with self-training counts 300 steps."),
    h("p", { class: "muted", "data-testid": "train-object-size" },
      typeof project.object_diameter === "number"
        ? `Object size: ${project.object_diameter} px diameter, set on the `
        : "Object size: from the objects painted whole, else estimated from each prediction; set it on the ",
      h("a", { href: `/projects/${pid}` }, "project page"), "."));
  return { el, setVersions };
}

function runPanel(run: TrainingRun, canEdit: boolean, onCancel: () => void, version?: ModelVersion): HTMLElement {
  const pct = Math.round(100 * (run.status === "succeeded" ? 1 : run.progress));
  const canvas = h("canvas", { width: "560", height: "180", "data-testid": "train-loss-chart", style: { display: "block", margin: "8px 0" } });
  drawLineChart(canvas, run.loss_curve, { xMax: run.total_steps, label: "loss per step", markers: roundMarkers(run.rounds) });
  const series = validationSeries(run.rounds);
  let validation: HTMLElement | null = null;
  if (series) {
    const [, name, pts] = series;
    const vcanvas = h("canvas", { width: "560", height: "120", "data-testid": "train-validation-chart", style: { display: "block", margin: "8px 0" } });
    drawLineChart(vcanvas, pts, { xMax: run.total_steps, label: `validation ${name} after each round`, markers: roundMarkers(run.rounds), dots: true });
    const r0 = run.rounds.find((r) => r.validation);
    validation = h("div", { "data-testid": "train-validation" },
      h("div", { class: "muted" }, `Validation ${name} after each round (on ${r0?.validation?.images ?? "?"} ${r0?.validation?.split ?? ""} image(s)): `,
        h("span", { "data-testid": "train-validation-points" }, run.rounds.filter((r) => r.validation).map((r) => `round ${r.round}: ${(r.validation!.scores[series[0]] ?? NaN).toFixed(3)}`).join(", "))),
      vcanvas);
  }
  const cancel = canEdit && run.is_active
    ? h("button", { class: "danger", "data-testid": "train-cancel", disabled: run.cancel_requested, onclick: onCancel }, run.cancel_requested ? "Cancelling…" : "Cancel")
    : null;
  return h("div", { class: "panel", "data-testid": "train-run", "data-status": run.status, "data-run-id": String(run.id) },
    h("h2", {}, `Run ${run.id} `, h("span", { class: `badge${run.status === "succeeded" ? " ok" : ""}`, "data-testid": "train-status" }, run.status)),
    h("progress", { max: "100", value: String(pct), "data-testid": "train-progress", style: { width: "100%", height: "18px" } }),
    h("div", { "data-testid": "train-numbers" },
      `${progressText(run)} · ${pct} % · elapsed ${fmtDuration(run.elapsed_seconds)}`,
      run.is_active ? ` · about ${fmtDuration(run.eta_seconds)} left` : ""),
    h("div", { class: "muted" }, run.message),
    canvas,
    validation,
    run.status === "failed" ? h("div", { class: "error-block", role: "alert", "data-testid": "train-error" }, h("strong", {}, "Training failed: "), run.error) : null,
    run.model_version ? h("p", {}, "Produced ", h("a", { href: `/projects/${run.project}/models`, "data-testid": "train-version-link" }, "a new model version"), ".") : null,
    version ? comparisonBlock(version.comparison, "train-baselines") : null,
    version && heldOutNote(version.provenance) ? h("p", { class: "muted", "data-testid": "train-heldout-note" }, heldOutNote(version.provenance)) : null,
    version && splitNote(version.provenance) ? h("p", { class: "muted", "data-testid": "train-split-note" }, splitNote(version.provenance)) : null,
    version && gateNote(version.provenance) ? h("p", { class: "muted", "data-testid": "train-gate-note" }, gateNote(version.provenance)) : null,
    version && edgesNote(version.provenance) ? h("p", { class: "muted", "data-testid": "train-edges-note" }, edgesNote(version.provenance)) : null,
    version && sizeNote(version.provenance) ? h("p", { class: "muted", "data-testid": "train-size-note" }, sizeNote(version.provenance)) : null,
    cancel);
}

function historyTable(runs: TrainingRun[], onPick: (r: TrainingRun) => void): HTMLElement {
  if (!runs.length) return h("p", { class: "muted" }, "No training runs yet.");
  const table = h("table", { "data-testid": "train-history" },
    h("tr", {}, ...["run", "status", "steps", "loss", "started by", "created"].map((t) => h("th", { style: { textAlign: "left", paddingRight: "12px" } }, t))));
  for (const r of runs) {
    const last = r.loss_curve.length ? r.loss_curve[r.loss_curve.length - 1][1].toFixed(4) : "–";
    table.append(h("tr", {},
      h("td", {}, h("button", { class: "link", onclick: () => onPick(r) }, `#${r.id}`)),
      h("td", {}, r.status), h("td", {}, `${r.step}/${r.total_steps}`), h("td", {}, last),
      h("td", {}, r.created_by ?? ""), h("td", {}, new Date(r.created_at).toLocaleString())));
  }
  return table;
}

async function renderTraining(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const pid = params.projectId;
  renderNav(pid);
  let timer: number | undefined;
  const versionsTimer = { id: 0 };
  const stop = () => {
    window.clearTimeout(timer);
    window.clearInterval(versionsTimer.id);
  };
  let project: Project, versions: ModelVersion[], runs: TrainingRun[];
  try {
    [project, versions, runs] = await Promise.all([
      loadProject(pid),
      api.get<ModelVersion[]>(`/projects/${pid}/model-versions/`),
      api.get<TrainingRun[]>(`/projects/${pid}/training-runs/`),
    ]);
  } catch (err) {
    root.append(errorBlock(err, "Could not load training"));
    return stop;
  }
  renderNav(pid, project.name);
  const canEdit = project.my_role === "owner" || project.my_role === "annotator";
  const current = h("div", { "data-testid": "train-current" });
  const history = h("div", {});
  let shown: TrainingRun | null = runs.find((r) => r.is_active) ?? runs[0] ?? null;

  const draw = () => {
    const version = shown?.model_version ? versions.find((v) => v.id === shown!.model_version) : undefined;
    current.replaceChildren(shown ? runPanel(shown, canEdit, cancel, version) : h("p", { class: "muted" }, "No run yet: press Train."));
    history.replaceChildren(h("h2", {}, "Earlier runs"), historyTable(runs, (r) => { shown = r; draw(); void poll(); }));
  };
  const poll = async () => {
    window.clearTimeout(timer);
    if (!shown) return;
    try {
      const wasActive = shown.is_active;
      shown = await api.get<TrainingRun>(`/training-runs/${shown.id}/`);
      if ((wasActive && !shown.is_active) || (shown.model_version && !versions.some((v) => v.id === shown!.model_version))) {
        await refreshVersions();  // the new version and its scores, and "Start from" offers it
      }
      runs = runs.some((r) => r.id === shown!.id) ? runs.map((r) => (r.id === shown!.id ? shown! : r)) : [shown, ...runs];
      draw();
    } catch (err) {
      showError(err, "Could not refresh the run");
    }
    if (shown && shown.is_active) timer = window.setTimeout(poll, POLL_MS);
  };
  const refreshVersions = async () => {
    versions = await api.get<ModelVersion[]>(`/projects/${pid}/model-versions/`);
    form?.setVersions(versions);
  };
  const cancel = async () => {
    if (!shown) return;
    try {
      shown = await api.post<TrainingRun>(`/training-runs/${shown.id}/cancel/`);
      draw();
      void poll();
    } catch (err) {
      showError(err, "Could not cancel");
    }
  };
  const form = canEdit ? startForm(pid, project, versions, (run) => { shown = run; draw(); void poll(); }) : null;
  versionsTimer.id = window.setInterval(() => void refreshVersions().catch(() => undefined), VERSIONS_POLL_MS);
  append(root,
    h("h1", {}, "Training"),
    form ? form.el : h("p", { class: "muted" }, "Viewers can watch runs; annotators and owners start them."),
    current, history);
  draw();
  void poll();
  return stop;
}

registerRoute("/projects/:projectId/train", renderTraining);
