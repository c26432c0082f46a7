/**
 * "Getting started": the loop in five steps and the annotate page's keyboard shortcuts. The shortcut rows
 * come from the annotate page's own table (`annotateShortcuts` + `KeyMap.helpRows`, the same rows its "?"
 * help shows), so the guide cannot drift from the keys that work. Opened from the nav bar on every page
 * (a dialog) and at /getting-started (a page).
 */
import { ToolController } from "./annotate/controller";
import { EditorState } from "./annotate/editor";
import { KeyMap } from "./annotate/keymap";
import { annotateShortcuts, type ShortcutActions } from "./annotate/shortcuts";
import { TOOLS } from "./annotate/tools";
import type { ToolContext } from "./annotate/tools/types";
import { registerRoute } from "./router";
import { dialog, h, renderNav } from "./ui";

/** The annotate page's shortcut rows [keys, what they do], in its help's order. */
export function shortcutRows(): Array<[string, string]> {
  const editor = new EditorState([1, 2], () => 1);
  const noop = () => undefined;
  const ctx: ToolContext = { editor, store: {} as ToolContext["store"], width: 1, height: 1,
    maskChanged: noop, requestRender: noop, scale: () => 1, notify: noop };
  const actions: ShortcutActions = { undo: noop, redo: noop, save: noop, chooseClass: noop, setPanKey: noop, fit: noop,
    toggleMask: noop, deletePicked: noop, help: noop };
  return new KeyMap(annotateShortcuts(new ToolController(TOOLS, ctx), editor, actions)).helpRows();
}

export const STEPS: Array<[string, string]> = [
  ["Create a project", "on the Projects page: a name and one class per kind of object (background is added for you)."],
  ["Upload images", "drop TIFF/PNG files on the project page (8/16-bit, several channels). Put one or two labelled images in the validation split: versions are scored on them."],
  ["Paint both classes", "open an image and paint a few strokes of background and of every object class, where they touch too. Strokes are enough; whole objects (instance mode, I: draw each with the polygon or fill, or paint its outline as background) teach more and set the object size. Or measure a few objects across with Measure (M) and set their typical diameter on the project page."],
  ["Train", "on the Training page press Train; watch the loss and the validation scores per round."],
  ["Check and correct", "the Models page compares versions on the images both were scored on. Predict an image and step through its Objects to check (the grid shows how many): where objects look merged, paint a short background line between them; or accept the prediction and correct it. Then train again."],
];

export function guideContent(): HTMLElement {
  return h("div", { class: "guide", "data-testid": "guide" },
    h("ol", { "data-testid": "guide-steps" }, ...STEPS.map(([title, text]) => h("li", {}, h("strong", {}, title), ": ", text))),
    h("h3", {}, "Keyboard shortcuts on the annotate page"),
    h("table", { class: "help", "data-testid": "guide-shortcuts" },
      ...shortcutRows().map(([k, v]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, v)))),
    h("p", { class: "muted" }, "Press ? on the annotate page for this table. Members and accounts: owners invite members on the project page; staff create accounts on the Projects page."));
}

export function showGuide(): void {
  void dialog("Getting started", guideContent(), [{ label: "Close", value: "close", primary: true, testid: "guide-close" }]);
}

registerRoute("/getting-started", (root) => {
  renderNav();
  root.append(h("h1", {}, "Getting started"), guideContent());
});
