/** Project page: image grid (thumbnail, split, annotation status), filters, drag-and-drop batch upload, members. */
import { api, getAll, uploadForm, type ImageInfo, type Member, type Project } from "../api";
import { Hook } from "../hooks";
import { navigate, registerRoute } from "../router";
import { append, errorBlock, fmtBytes, h, messageOf, renderNav, showError, toast } from "../ui";

/** What an extension of the project page's image grid gets (e.g. prediction thumbnails on the cards). */
export interface ImageGridContext {
  projectId: string;
  grid: HTMLElement;
  /** Call `fn` after every redraw of the cards (filters, uploads, deletes). */
  onDraw(fn: () => void): void;
}

/** Extensions of the image grid; they register in src/extensions.ts. */
export const imageGridHooks = new Hook<ImageGridContext>("image grid");

/** Sections appended below the project page (e.g. the Export panel); they register in src/extensions.ts. */
export const projectSections = new Hook<{ projectId: string; project: Project }, Node | null>("project page");

/** The project, cached for pages that need it (nav bar, annotate page). */
export async function loadProject(id: string | number): Promise<Project> {
  return api.get<Project>(`/projects/${id}/`);
}

export function thumbnailUrl(img: ImageInfo): string {
  return img.thumbnail_url || `/api/v1/images/${img.id}/thumbnail.png`;
}

export function annotateUrl(projectId: number | string, imageId: number | string): string {
  return `/projects/${projectId}/images/${imageId}/annotate`;
}

async function renderProject(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const pid = params.projectId;
  renderNav(pid);
  let project: Project;
  try {
    project = await loadProject(pid);
  } catch (err) {
    root.append(errorBlock(err, "Could not load the project"));
    return;
  }
  renderNav(pid, project.name);
  const canEdit = project.my_role !== "viewer";
  const grid = h("div", { class: "image-grid", "data-testid": "image-grid" });
  const split = h("select", { "data-testid": "filter-split" }, ...["", "train", "validation", "test"].map((s) => h("option", { value: s }, s || "all splits")));
  const status = h("select", { "data-testid": "filter-annotated" }, h("option", { value: "" }, "any status"), h("option", { value: "yes" }, "annotated"), h("option", { value: "no" }, "not annotated"));
  const search = h("input", { type: "search", placeholder: "file name", "data-testid": "filter-name" });
  let images: ImageInfo[] = [];
  const drawn: Array<() => void> = [];

  const draw = () => {
    grid.replaceChildren();
    const q = search.value.toLowerCase();
    const shown = images.filter((im) =>
      (!split.value || im.split === split.value) &&
      (!status.value || (status.value === "yes") === isAnnotated(im)) &&
      (!q || im.original_filename.toLowerCase().includes(q)));
    if (!shown.length) grid.append(h("p", { class: "muted" }, images.length ? "No image matches the filters." : "No images yet: drop files here or choose them above."));
    for (const im of shown) grid.append(imageCard(project, im, canEdit, load));
    drawn.forEach((fn) => fn());
  };
  const load = async () => {
    try {
      images = await getAll<ImageInfo>(`/projects/${pid}/images/`);
      draw();
    } catch (err) {
      grid.replaceChildren(errorBlock(err, "Could not load the images"));
    }
  };
  [split, status].forEach((el) => el.addEventListener("change", draw));
  search.addEventListener("input", draw);

  const train = canEdit
    ? h("button", { class: "primary", "data-testid": "train-button", title: "Train a new model version from this project's strokes" }, "Train…")
    : null;
  train?.addEventListener("click", () => navigate(`/projects/${pid}/train`));
  const models = h("button", { "data-testid": "models-button" }, "Models");
  models.addEventListener("click", () => navigate(`/projects/${pid}/models`));
  append(root,
    h("div", { class: "filters" }, h("h1", { style: { margin: "0 12px 0 0" } }, project.name), train, " ", models),
    h("div", { class: "swatches" }, ...project.classes.map((c) => h("span", { class: "chip" }, h("span", { class: "swatch", style: { background: c.color } }), `${c.index} ${c.name}`))),
    canEdit ? uploader(pid, load) : null,
    h("div", { class: "filters" }, "Show ", split, " ", status, " ", search),
    grid,
    objectSize(pid, project, project.my_role === "owner"),
    project.my_role === "owner" ? members(pid) : null,
  );
  imageGridHooks.run({ projectId: pid, grid, onDraw: (fn) => drawn.push(fn) }, (err, name) => showError(err, `The image-grid extension "${name}" failed`));
  projectSections.run({ projectId: pid, project }, (err, name) => showError(err, `The section "${name}" failed`)).forEach((n) => n && root.append(n));
  await load();
}

function isAnnotated(im: ImageInfo): boolean {
  return Boolean(im.has_annotation ?? ((im.labelled_pixels ?? 0) > 0 || (im.annotation_version ?? 0) > 0));
}

function imageCard(project: Project, im: ImageInfo, canEdit: boolean, reload: () => void): HTMLElement {
  const splitSel = h("select", { disabled: !canEdit, title: "split" }, ...["train", "validation", "test"].map((s) => h("option", { value: s }, s)));
  splitSel.value = im.split;
  splitSel.addEventListener("change", async () => {
    try {
      await api.patch(`/images/${im.id}/`, { split: splitSel.value });
      im.split = splitSel.value;
    } catch (err) {
      showError(err, "Could not change the split");
      splitSel.value = im.split;
    }
  });
  return h("div", { class: "image-card", "data-testid": `image-${im.id}` },
    h("a", { href: annotateUrl(project.id, im.id), title: "Annotate" }, h("img", { src: thumbnailUrl(im), alt: im.original_filename, loading: "lazy" })),
    h("div", { class: "name", title: im.original_filename }, im.original_filename),
    h("div", { class: "muted" }, `${im.width}×${im.height} · ${im.channels}ch ${im.dtype}`),
    h("div", { class: "row" }, splitSel, h("span", { class: isAnnotated(im) ? "badge ok" : "badge" }, isAnnotated(im) ? "annotated" : "not annotated")),
    canEdit ? h("button", { class: "link danger", onclick: async () => {
      if (!confirm(`Delete ${im.original_filename}?`)) return;
      try {
        await api.del(`/images/${im.id}/`);
        reload();
      } catch (err) {
        showError(err, "Could not delete");
      }
    } }, "delete") : null,
  );
}

/** One file's result from the batch upload answer. */
interface FileResult {
  filename: string;
  id?: number;
  error?: string;
}

/**
 * Drag-and-drop / file-picker upload. Files go up a few at a time (each as its own multipart request
 * with the `files` field) so every file gets its own progress bar and its own result line.
 */
function uploader(pid: string, onDone: () => void): HTMLElement {
  const input = h("input", { type: "file", multiple: true, accept: ".tif,.tiff,.png,.jpg,.jpeg,image/*", "data-testid": "upload-input" });
  const statusBox = h("div", { class: "upload-status", "data-testid": "upload-status" });
  const zone = h("div", { class: "dropzone", "data-testid": "dropzone" }, h("strong", {}, "Drop images here"), " (TIFF 8/16-bit, multichannel, PNG, JPEG) or ", input);
  const start = (files: File[]) => void uploadAll(pid, files, statusBox).then(onDone);
  input.addEventListener("change", () => {
    start([...(input.files ?? [])]);
    input.value = "";
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    start([...(e.dataTransfer?.files ?? [])]);
  });
  return h("div", { class: "panel" }, zone, statusBox);
}

async function uploadAll(pid: string, files: File[], box: HTMLElement): Promise<void> {
  if (!files.length) return;
  box.replaceChildren();
  const summary = h("div", { class: "summary", "data-testid": "upload-summary" }, `Uploading ${files.length} file(s)…`);
  box.append(summary);
  const rows = files.map((f) => {
    const bar = h("progress", { max: 1, value: 0 });
    const msg = h("span", { class: "msg" }, "waiting");
    const row = h("div", { class: "upload-row", "data-testid": "upload-row", "data-filename": f.name }, h("span", { class: "fname" }, f.name), h("span", { class: "muted" }, fmtBytes(f.size)), bar, msg);
    box.append(row);
    return { file: f, bar, msg, row };
  });
  let ok = 0, failed = 0, next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const r = rows[next++];
      const form = new FormData();
      form.append("files", r.file, r.file.name);
      r.msg.textContent = "uploading";
      try {
        const { status, body } = await uploadForm(`/projects/${pid}/images/`, form, (l, t) => (r.bar.value = t ? l / t : 0));
        const results = ((body as { results?: FileResult[] })?.results ?? (Array.isArray(body) ? body : [])) as FileResult[];
        const res = results.find((x) => x.filename === r.file.name) ?? results[0];
        if (status < 300 && res && !res.error) {
          r.bar.value = 1;
          r.msg.textContent = "stored";
          r.row.classList.add("ok");
          ok++;
        } else {
          const why = res?.error ?? (body as { detail?: string })?.detail ?? `HTTP ${status}`;
          r.msg.textContent = `error: ${why}`;
          r.row.classList.add("error");
          failed++;
        }
      } catch (err) {
        r.msg.textContent = `error: ${messageOf(err)}`;
        r.row.classList.add("error");
        failed++;
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  summary.textContent = `Done: ${ok} stored, ${failed} failed.`;
  summary.dataset.done = "true";
  if (failed) toast(`${failed} file(s) could not be stored: see the list.`, "error");
}

/** The object diameters (px) the server takes (``OBJECT_DIAMETER_BOUNDS`` of the ML core). */
export const OBJECT_DIAMETER_MIN = 4;
export const OBJECT_DIAMETER_MAX = 1000;

/** Set the project's object diameter (px; null clears it): the project page's panel and the Measure tool's offer. */
export function saveObjectDiameter(pid: string, diameter: number | null): Promise<Project> {
  return api.patch<Project>(`/projects/${pid}/`, { object_diameter: diameter });
}

/** What the project's object size setting says: the diameter set, or how the size is found without it. */
export function objectSizeText(diameter: number | null | undefined): string {
  return typeof diameter === "number"
    ? `Set: ${diameter} px. Touching objects are split at this size, and training crops grow to hold objects larger than the preset's crops do.`
    : "Not set: the size comes from the objects painted whole (3 or more), else it is estimated from each prediction.";
}

/** The object size panel: owners set the typical object diameter (px) or clear it; members see it. It applies to
 * training runs and live sessions started afterwards: versions trained already keep the size they were trained with. */
function objectSize(pid: string, project: Project, isOwner: boolean): HTMLElement {
  const status = h("p", { class: "muted", "data-testid": "object-diameter-status" }, objectSizeText(project.object_diameter));
  const panel = h("section", { class: "panel", "data-testid": "object-size" }, h("h2", {}, "Object size"), status);
  if (!isOwner) return panel;
  const input = h("input", { type: "number", min: String(OBJECT_DIAMETER_MIN), max: String(OBJECT_DIAMETER_MAX), step: "0.5", placeholder: "not set",
    value: project.object_diameter == null ? "" : String(project.object_diameter),
    "data-testid": "object-diameter", "aria-label": "object diameter in pixels" });
  const save = async (value: number | null) => {
    try {
      const updated = await saveObjectDiameter(pid, value);
      project.object_diameter = updated.object_diameter;
      input.value = updated.object_diameter == null ? "" : String(updated.object_diameter);
      status.textContent = objectSizeText(updated.object_diameter);
      toast(value === null ? "Object size cleared: it is estimated again." : `Object size set to ${updated.object_diameter} px.`, "ok");
    } catch (err) {
      showError(err, "Could not save the object size");
    }
  };
  // novalidate: an out-of-range value gets the server's message in a toast, like every other error on the page
  const form = h("form", { novalidate: true }, h("label", {}, "Typical object diameter (px) ", input), " ",
    h("button", { type: "submit", "data-testid": "object-diameter-save" }, "Save"), " ",
    h("button", { type: "button", class: "link", "data-testid": "object-diameter-clear", onclick: () => void save(null) }, "clear"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.validity.badInput) {  // typed text that is not a number reads as "": it must not clear the setting
      toast("The object diameter must be a number of pixels (or empty, with clear).", "error");
      return;
    }
    void save(input.value.trim() === "" ? null : Number(input.value));
  });
  panel.append(form, h("p", { class: "muted" },
    "The width across an object's narrowest part: a round nucleus's diameter, a rod's width. Leave it empty to let LabSeg "
    + "measure it. It applies to the next training run and live session; versions trained already keep theirs."));
  return panel;
}

function members(pid: string): HTMLElement {
  const list = h("ul", { "data-testid": "member-list" });
  const username = h("input", { type: "text", placeholder: "username or e-mail", "data-testid": "member-username", "aria-label": "username or e-mail" });
  const role = h("select", { "data-testid": "member-role" }, ...["annotator", "viewer", "owner"].map((r) => h("option", { value: r }, r)));
  const load = async () => {
    try {
      const ms = await getAll<Member>(`/projects/${pid}/members/`);
      list.replaceChildren(...ms.map((m) => h("li", {}, `${m.username} (${m.role}) `, h("button", { class: "link danger", onclick: async () => {
        try {
          await api.del(`/projects/${pid}/members/${encodeURIComponent(m.username)}/`);
          await load();
        } catch (err) {
          showError(err, "Could not remove the member");
        }
      } }, "remove"))));
    } catch (err) {
      list.replaceChildren(errorBlock(err, "Could not load members"));
    }
  };
  const form = h("form", {}, username, " ", role, " ", h("button", { type: "submit", "data-testid": "member-invite" }, "Invite"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const m = await api.post<Member>(`/projects/${pid}/members/`, { username: username.value.trim(), role: role.value });
      username.value = "";
      toast(`${m.username} is now a member (${m.role}).`, "ok");
      await load();
    } catch (err) {
      showError(err, "Could not add the member");
    }
  });
  void load();
  return h("section", { class: "panel", "data-testid": "members" }, h("h2", {}, "Members"), list,
    h("p", { class: "muted" }, "Invite someone with an account by username or e-mail. No account yet? A staff member creates one on the Projects page."), form);
}

registerRoute("/projects/:projectId", renderProject);
