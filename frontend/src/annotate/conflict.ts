/** 409 on save: show theirs next to mine and let the user choose; never drop work silently. */
import type { Project } from "../api";
import type { AnnotationStore, Conflict } from "../annotation";
import { dialog, h, showError } from "../ui";
import { rgb } from "../viewer";

/** Render a class mask small, for the conflict dialog. */
function maskPreview(classes: Uint8Array, w: number, hgt: number, project: Project): HTMLCanvasElement {
  const s = Math.min(1, 240 / Math.max(w, hgt));
  const cw = Math.max(1, Math.round(w * s)), ch = Math.max(1, Math.round(hgt * s));
  const cv = h("canvas", { width: cw, height: ch, class: "mask-preview" });
  const ctx = cv.getContext("2d")!;
  const img = ctx.createImageData(cw, ch);
  const colors = new Map(project.classes.map((c) => [c.index, rgb(c.color)]));
  for (let y = 0; y < ch; y++)
    for (let x = 0; x < cw; x++) {
      const v = classes[Math.min(hgt - 1, Math.floor(y / s)) * w + Math.min(w - 1, Math.floor(x / s))];
      const [r, g, b] = v ? colors.get(v) ?? [128, 128, 128] : [20, 20, 20];
      img.data.set([r, g, b, 255], (y * cw + x) * 4);
    }
  ctx.putImageData(img, 0, 0);
  return cv;
}

export async function conflictDialog(store: AnnotationStore, c: Conflict, project: Project): Promise<void> {
  const who = c.theirs.updated_by ? ` by ${c.theirs.updated_by}` : "";
  const body = h("div", { "data-testid": "conflict-dialog" },
    h("p", {}, `Someone else saved this annotation (version ${c.theirs.version}${who}) after you opened it. Your ${store.strokes.length} stroke(s) are kept (also as a local draft) until you choose.`),
    h("div", { class: "previews" },
      h("figure", {}, maskPreview(c.theirMasks.classes, store.width, store.height, project), h("figcaption", {}, "theirs (stored)")),
      h("figure", {}, maskPreview(store.masks.classes, store.width, store.height, project), h("figcaption", {}, "mine"))),
  );
  const choice = await dialog("Conflicting edit", body, [
    { label: "Reload theirs (drop mine)", value: "theirs", testid: "conflict-theirs" },
    { label: "Add my strokes to theirs", value: "merge", testid: "conflict-merge" },
    { label: "Overwrite with mine", value: "mine", primary: true, testid: "conflict-mine" },
  ]);
  try {
    await store.resolveConflict(choice, c);
  } catch (err) {
    showError(err, "Could not resolve the conflict");
  }
}
