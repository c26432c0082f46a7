/**
 * The Export panel (project page and Models page): every file a lab can take out of LabSeg, each named for
 * what it is with one line on what opens it. Registered in src/extensions.ts (projectSections, modelsSections).
 *
 * - Annotation masks, prediction masks: `GET /api/v1/projects/{id}/export/masks.zip?include=…[&version=]`
 *   (made on request: a plain download link).
 * - TorchScript, ONNX: made by a worker. `GET /api/v1/model-versions/{id}/export/{fmt}` answers 202 with the
 *   export job until the file exists (then 200 with the file); the panel polls `GET /api/v1/exports/{id}/`
 *   and shows progress, then a download link (`/api/v1/exports/{id}/file`), or the error.
 * - Checkpoint: the raw training checkpoint (`/api/v1/model-versions/{id}/checkpoint`), for LabSeg itself.
 */
import { api, API, ApiError, errorFrom } from "./api";
import { h } from "./ui";

export interface ExportVersion {
  id: number;
  number: number;
  name?: string;
  is_active: boolean;
  checkpoint_url: string;
}

export interface ExportJob {
  id: number;
  model_version: number;
  format: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  error: string;
  filename: string;
  download: string | null;
}

/** The model formats made by a worker, with what opens each. */
export const MODEL_FORMATS: Array<{ fmt: "torchscript" | "onnx"; label: string; opens: string }> = [
  { fmt: "torchscript", label: "TorchScript (.pt)", opens: "load with torch.jit.load in Python, no LabSeg needed; the normalisation and classes are inside (labseg.json)." },
  { fmt: "onnx", label: "ONNX (.onnx)", opens: "onnxruntime (Python, C++, C#), Fiji/deepImageJ, OpenCV dnn; the description is in the model's metadata (labseg.json)." },
];

const POLL_MS = 700;

/**
 * Ask for a model export and follow it: `onUpdate` gets the job after every answer; resolves with the
 * job once it succeeded (its `download` URL set) and rejects with the job's error when it failed.
 */
export async function runModelExport(versionId: number, fmt: string, onUpdate: (job: ExportJob | null) => void,
  isCancelled: () => boolean = () => false): Promise<ExportJob | { download: string }> {
  const url = `${API}/model-versions/${versionId}/export/${fmt}`;
  let resp: Response;
  try {
    resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch {
    throw new ApiError(0, "Network error: the server cannot be reached.");
  }
  if (!resp.ok) throw await errorFrom(resp);
  if (resp.status === 200) {
    // already made: this URL answers with the file itself; do not read it here, link to it
    void resp.body?.cancel();
    return { download: url };
  }
  let job = (await resp.json()) as ExportJob;
  onUpdate(job);
  while (job.status === "queued" || job.status === "running") {
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (isCancelled()) throw new Error("cancelled");
    job = await api.get<ExportJob>(`/exports/${job.id}/`);
    onUpdate(job);
  }
  if (job.status !== "succeeded" || !job.download) {
    throw new Error(job.error || `The export ${job.status}.`);
  }
  return job;
}

function row(testid: string, label: string, opens: string, ...actions: Array<Node | string | null>): HTMLElement {
  return h("div", { class: "export-row", "data-testid": testid, style: { margin: "6px 0" } },
    h("strong", {}, label), " — ", h("span", { class: "muted" }, opens), h("div", { class: "row", style: { gap: "8px", marginTop: "2px" } }, ...actions));
}

/** A download link that says it is one. */
function link(href: string, text: string, testid: string): HTMLAnchorElement {
  return h("a", { href, download: "", "data-testid": testid }, text);
}

/**
 * The panel for a project: masks of the annotations, of a version's predictions, and that version's model as
 * TorchScript, ONNX or checkpoint. `versions` newest first (null: fetched here); the active one is chosen first.
 */
export function exportPanel(projectId: number | string, versions: ExportVersion[] | null): HTMLElement {
  const panel = h("section", { class: "panel export-panel", "data-testid": "export-panel" }, h("h2", { style: { marginTop: "0" } }, "Export"));
  const body = h("div", {});
  panel.append(body);
  const fill = (vs: ExportVersion[]) => {
    body.replaceChildren();
    body.append(row("export-annotation-masks", "Annotation masks (TIFF zip)",
      "one class mask (uint8: 1 background, 2.. classes) and one instance mask (uint16 ids) per image, plus an objects CSV (id, class, area); opens in Fiji/ImageJ, napari, Python (tifffile), QuPath.",
      link(`${API}/projects/${projectId}/export/masks.zip?include=annotations`, "Download annotation masks", "download-annotation-masks")));
    if (!vs.length) {
      body.append(h("p", { class: "muted", "data-testid": "export-no-model" }, "Prediction masks and the model (TorchScript, ONNX, checkpoint) can be exported once a model version exists: train one first."));
      return;
    }
    const select = h("select", { "data-testid": "export-version" }, ...vs.map((v) =>
      h("option", { value: String(v.id) }, `v${v.number}${v.name ? " " + v.name : ""}${v.is_active ? " (active)" : ""}`)));
    select.value = String((vs.find((v) => v.is_active) ?? vs[0]).id);
    const versionBody = h("div", {});
    body.append(h("div", { class: "row", style: { gap: "8px", margin: "8px 0" } }, h("label", {}, "Model version ", select)), versionBody);
    let generation = 0;
    const fillVersion = () => {
      generation += 1;
      const mine = generation;
      const v = vs.find((x) => String(x.id) === select.value) ?? vs[0];
      versionBody.replaceChildren(
        row("export-prediction-masks", `Prediction masks of v${v.number} (TIFF zip)`,
          "the newest prediction of this version per image: class and instance masks of every class, plus an objects CSV; the same tools as above.",
          link(`${API}/projects/${projectId}/export/masks.zip?include=predictions&version=${v.id}`, "Download prediction masks", "download-prediction-masks")),
        ...MODEL_FORMATS.map((f) => modelRow(v, f, () => mine !== generation)),
        row("export-checkpoint", "Checkpoint (.pt, raw PyTorch training state)",
          "for LabSeg itself (upload to another project, fine-tune) or labseg.ml.train.load_checkpoint; torch.jit.load cannot open it: take TorchScript for that.",
          link(v.checkpoint_url, "Download checkpoint", "download-checkpoint")),
      );
    };
    select.addEventListener("change", fillVersion);
    fillVersion();
  };
  if (versions) fill(versions);
  else {
    body.append(h("p", { class: "muted" }, "Loading…"));
    api.get<ExportVersion[]>(`/projects/${projectId}/model-versions/`)
      .then((vs) => fill(Array.isArray(vs) ? vs : []))
      .catch((err: unknown) => body.replaceChildren(h("p", { class: "error", role: "alert", "data-testid": "export-error" },
        `Could not load the model versions: ${err instanceof Error ? err.message : String(err)}`)));
  }
  return panel;
}

/** One worker-made format: a button that starts (or finds) the export, progress while it runs, then the link. */
function modelRow(v: ExportVersion, f: (typeof MODEL_FORMATS)[number], stale: () => boolean): HTMLElement {
  const status = h("span", { class: "muted", "data-testid": `export-${f.fmt}-status` });
  const progress = h("progress", { max: "1", value: "0", hidden: true, "data-testid": `export-${f.fmt}-progress` });
  const out = h("span", {});
  const button = h("button", { "data-testid": `export-${f.fmt}` }, `Export ${f.label.split(" ")[0]}`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren();
    status.classList.remove("error");
    status.removeAttribute("role");
    status.textContent = "asking…";
    try {
      const job = await runModelExport(v.id, f.fmt, (j) => {
        if (!j) return;
        progress.hidden = false;
        progress.value = j.progress;
        status.textContent = j.status === "queued" ? "waiting for a worker…" : `exporting… ${Math.round(j.progress * 100)} %`;
      }, stale);
      progress.hidden = true;
      status.textContent = "ready: ";
      out.replaceChildren(link(job.download!, `Download ${"filename" in job && job.filename ? job.filename : f.label}`, `download-${f.fmt}`));
    } catch (err) {
      if (stale()) return;
      progress.hidden = true;
      status.classList.add("error");
      status.setAttribute("role", "alert");
      status.textContent = `Export failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      button.disabled = false;
    }
  });
  return row(`export-row-${f.fmt}`, f.label, f.opens, button, progress, status, out);
}
