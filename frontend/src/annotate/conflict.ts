/**
 * 409 on save: show theirs next to mine, large, with the differences bright, and let the user choose;
 * never drop work silently. "Add my strokes to theirs" is the default (focused: Enter takes it); the
 * choices that drop someone's work say so in their label.
 */
import type { Project } from "../api";
import type { AnnotationStore, Conflict } from "../annotation";
import { dialog, h, showError } from "../ui";
import { rgb } from "../viewer";
import { maskCanvas, type Rgb } from "./mask-preview";

/** Longer side of each preview's pixels (CSS then fits both side by side in the dialog). */
const PREVIEW_PX = 640;

export type ConflictChoice = "theirs" | "mine" | "merge";

/** The dialog's buttons, in order: the safe choice last (primary, focused), the destructive ones labelled so. */
export const CONFLICT_BUTTONS: ReadonlyArray<{ label: string; value: ConflictChoice; primary?: boolean; testid: string }> = [
  { label: "Overwrite theirs with mine (drops their changes)", value: "mine", testid: "conflict-mine" },
  { label: "Reload theirs (drops my unsaved strokes)", value: "theirs", testid: "conflict-theirs" },
  { label: "Add my strokes to theirs", value: "merge", primary: true, testid: "conflict-merge" },
];

/** "1 unsaved stroke", "3 unsaved strokes". */
export function unsavedText(n: number): string {
  return `${n} unsaved stroke${n === 1 ? "" : "s"}`;
}

export async function conflictDialog(store: AnnotationStore, c: Conflict, project: Project): Promise<void> {
  const who = c.theirs.updated_by ? ` by ${c.theirs.updated_by}` : "";
  const n = store.unsavedStrokes.length;
  const colors = new Map<number, Rgb>(project.classes.map((k) => [k.index, rgb(k.color)]));
  const theirs = maskCanvas(c.theirMasks.classes, store.width, store.height, PREVIEW_PX, colors, { other: store.masks.classes, testid: "conflict-preview-theirs" });
  const mine = maskCanvas(store.masks.classes, store.width, store.height, PREVIEW_PX, colors, { other: c.theirMasks.classes, testid: "conflict-preview-mine" });
  const body = h("div", { class: "conflict-body", "data-testid": "conflict-dialog", "data-unsaved": n },
    h("p", {},
      `Someone else saved this annotation (version ${c.theirs.version}${who}) after you opened it. `,
      h("strong", { "data-testid": "conflict-unsaved" }, unsavedText(n)),
      " of yours are kept (also as a local draft) until you choose."),
    h("div", { class: "previews" },
      h("figure", {}, theirs.canvas, h("figcaption", {}, `theirs (stored, version ${c.theirs.version})`)),
      h("figure", {}, mine.canvas, h("figcaption", {}, "mine (with my unsaved strokes)"))),
    h("p", { class: "muted small", "data-testid": "conflict-diff" },
      theirs.differing
        ? `${theirs.differing.toLocaleString()} pixels differ: shown bright (white = unlabelled in that version); pixels the same in both are dimmed.`
        : "The two versions have the same labels."),
  );
  const shown = dialog("Conflicting edit", body, [...CONFLICT_BUTTONS]);
  // the dialog is in the page now: the safe choice takes Enter; the overwrite looks destructive
  const box = body.closest(".modal") ?? body.parentElement;
  box?.classList.add("conflict-modal");
  box?.querySelector<HTMLButtonElement>("[data-testid=conflict-mine]")?.classList.add("danger");
  box?.querySelector<HTMLButtonElement>("[data-testid=conflict-merge]")?.focus();
  const choice = await shown;
  if (choice !== "theirs" && choice !== "mine" && choice !== "merge") return; // closed without a choice: still in conflict
  try {
    await store.resolveConflict(choice, c);
  } catch (err) {
    showError(err, "Could not resolve the conflict");
  }
}
