/**
 * History panel of the annotate page: every saved version of this image's annotation (who, when, how
 * many pixels labelled, a thumbnail of its classes) with Restore, so undoing a bad overwrite needs no
 * admin. Restoring saves the old masks again as a new version (the server keeps every version; nothing
 * is deleted). Registered in src/extensions.ts.
 *
 *   GET  /api/v1/images/{id}/annotation/                       the current version
 *   GET  /api/v1/images/{id}/annotation/history/               earlier versions, newest first (no masks)
 *   GET  /api/v1/images/{id}/annotation/history/{v}/           one earlier version with its masks
 *   POST /api/v1/images/{id}/annotation/history/{v}/restore/   save it again as the newest version
 */
import { api, type AnnotationData } from "../api";
import { decodeAnnotation } from "../annotation";
import { dialog, h, showError, toast } from "../ui";
import { rgb } from "../viewer";
import type { AnnotateContext } from "./context";
import { unsavedText } from "./conflict";
import { maskCanvas, type Rgb } from "./mask-preview";

export interface VersionRow {
  version: number;
  labelled_pixels: number;
  updated_by: string | null;
  updated_at: string | null;
}

/** Thumbnails drawn per refresh at most (older ones on "show older"). */
const PAGE = 8;
const THUMB_PX = 64;

/** "just now", "5 min ago", "3 h ago", else the date. */
export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (!isFinite(t)) return "";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

/** The rows the panel lists: the current version first, then the earlier ones, newest first, each once. */
export function versionRows(current: VersionRow | null, earlier: VersionRow[]): VersionRow[] {
  const rows = current && current.version > 0 ? [current] : [];
  for (const r of [...earlier].sort((a, b) => b.version - a.version)) if (!rows.some((x) => x.version === r.version)) rows.push(r);
  return rows;
}

export function historyPanel(ctx: AnnotateContext): () => void {
  const { image, store, project, canEdit } = ctx;
  const colors = new Map<number, Rgb>(project.classes.map((c) => [c.index, rgb(c.color)]));
  const list = h("ol", { class: "history-list", "data-testid": "history-list" });
  const more = h("button", { class: "link", hidden: true, "data-testid": "history-more", onclick: () => draw(rows.length) }, "show older versions");
  const note = h("p", { class: "muted small" }, "Every save is kept. Restore saves an old version again as the newest one.");
  ctx.addPanel(h("div", { class: "history", "data-testid": "history-panel" }, h("h3", {}, "History"), list, more, note));

  let rows: VersionRow[] = [];
  let shown = PAGE;
  let shownVersion = -1;
  let timer = 0;
  let disposed = false;
  /** Thumbnails by version (a saved version never changes). */
  const thumbs = new Map<number, Promise<HTMLCanvasElement | null>>();

  const masksOf = async (v: number): Promise<AnnotationData> =>
    v === rows[0]?.version ? api.get<AnnotationData>(`/images/${image.id}/annotation/`) : api.get<AnnotationData>(`/images/${image.id}/annotation/history/${v}/`);
  const thumb = (v: number): Promise<HTMLCanvasElement | null> => {
    let t = thumbs.get(v);
    if (!t) {
      t = masksOf(v)
        .then((a) => decodeAnnotation(a, image.width, image.height))
        .then((m) => maskCanvas(m.classes, image.width, image.height, THUMB_PX, colors, { className: "history-thumb", testid: `history-thumb-${v}` }).canvas)
        .catch(() => null);
      thumbs.set(v, t);
    }
    return t;
  };

  const draw = (n = shown) => {
    shown = n;
    list.replaceChildren(...rows.slice(0, shown).map((r, i) => {
      const slot = h("span", { class: "history-thumb-slot" });
      void thumb(r.version).then((c) => c && !disposed && slot.replaceChildren(c));
      const restore = i > 0 && canEdit
        ? h("button", { "data-testid": `history-restore-${r.version}`, title: `save version ${r.version} again as the newest version`, onclick: () => void restoreVersion(r) }, "Restore")
        : null;
      return h("li", { class: "history-row", "data-testid": `history-row-${r.version}` },
        slot,
        h("span", { class: "history-text" },
          h("strong", {}, `v${r.version}`), i === 0 ? h("span", { class: "badge ok" }, "current") : null, h("br"),
          h("span", { class: "muted", title: r.updated_at ? new Date(r.updated_at).toLocaleString() : "" }, [r.updated_by ?? "someone", ago(r.updated_at)].filter(Boolean).join(" · ")), h("br"),
          h("span", { class: "muted" }, `${r.labelled_pixels.toLocaleString()} px labelled`)),
        restore);
    }));
    if (!rows.length) list.append(h("li", { class: "muted" }, "Not saved yet."));
    more.hidden = rows.length <= shown;
  };

  const refresh = async () => {
    try {
      const [cur, earlier] = await Promise.all([
        api.get<AnnotationData & { labelled_pixels?: number }>(`/images/${image.id}/annotation/`),
        api.get<VersionRow[]>(`/images/${image.id}/annotation/history/`),
      ]);
      if (disposed) return;
      rows = versionRows({ version: cur.version, labelled_pixels: cur.labelled_pixels ?? 0, updated_by: cur.updated_by ?? null, updated_at: cur.updated_at ?? null }, earlier);
      shownVersion = cur.version;
      list.dataset.version = String(cur.version);
      draw();
    } catch (err) {
      list.replaceChildren(h("li", { class: "muted" }, `History unavailable: ${(err as Error).message}`));
    }
  };

  const restoreVersion = async (r: VersionRow) => {
    const unsaved = store.dirty ? ` ${unsavedText(store.unsavedStrokes.length)} of yours are saved first.` : "";
    const ok = await dialog(`Restore version ${r.version}?`,
      `Version ${r.version} (${r.updated_by ?? "someone"}, ${r.labelled_pixels.toLocaleString()} px labelled) is saved again as a new version. ` +
      `The current version v${rows[0]?.version} stays in the history: nothing is deleted.${unsaved}`,
      [{ label: "Cancel", value: "cancel" }, { label: `Restore version ${r.version}`, value: "ok", primary: true, testid: "restore-confirm" }]);
    if (ok !== "ok") return;
    try {
      if (store.dirty) await store.save();
      if (store.dirty || store.state === "conflict") {
        toast("Your strokes could not be saved first: resolve that, then restore.", "error", 8000);
        return;
      }
      const res = await api.post<AnnotationData>(`/images/${image.id}/annotation/history/${r.version}/restore/`);
      await store.load();
      toast(`Version ${r.version} restored as version ${res.version}.`, "ok");
      await refresh();
    } catch (err) {
      showError(err, `Could not restore version ${r.version}`);
    }
  };

  // follow saves (autosave, accept prediction, restore): redraw when the stored version changed
  const unlisten = store.listen((s) => {
    if (s !== "saved" || store.version === shownVersion) return;
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void refresh(), 300);
  });
  void refresh();
  return () => {
    disposed = true;
    window.clearTimeout(timer);
    unlisten();
  };
}
