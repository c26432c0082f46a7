/**
 * The annotate toolbar: a button per tool (from the tool controller), the classes, brush radius,
 * instance mode, undo/redo, mask opacity, fit/help, the extensions' group and Save. The buttons follow
 * the editor state and the active tool through their change listeners.
 */
import type { Project } from "../api";
import type { AnnotationStore } from "../annotation";
import { h } from "../ui";
import type { Viewer } from "../viewer";
import type { ToolController } from "./controller";
import { MAX_RADIUS, type EditorState } from "./editor";

export interface ToolbarParts {
  project: Project;
  canEdit: boolean;
  tools: ToolController;
  editor: EditorState;
  store: AnnotationStore;
  viewer: Viewer;
  /** The extensions' group, placed before Save. */
  ext: HTMLElement;
  chooseClass: (c: number) => void;
  help: () => void;
}

export interface Toolbar {
  /** Enable undo/redo by what the store holds. */
  syncHistory: () => void;
  /** O: the mask off, or back at the slider's opacity. */
  toggleMask: () => void;
}

export function fillToolbar(toolbar: HTMLElement, p: ToolbarParts): Toolbar {
  const { tools, editor, store, viewer, canEdit } = p;
  const toolButtons = new Map(tools.tools.map((t) => [t.id, h("button", { class: "tool", "data-testid": `tool-${t.id}`, title: `${t.label} (${t.key})`, onclick: () => tools.activate(t.id) }, t.label)]));
  const classButtons = new Map(p.project.classes.map((c) => [c.index,
    h("button", { class: "class-btn", "data-testid": `class-${c.index}`, title: `${c.name} (${c.index})`, onclick: () => p.chooseClass(c.index) }, h("span", { class: "swatch", style: { background: c.color } }), `${c.index} ${c.name}`)]));
  const sizeInput = h("input", { type: "number", min: 0, max: MAX_RADIUS, value: editor.radius, "data-testid": "brush-size", title: "brush radius in image pixels ([ and ])" });
  sizeInput.addEventListener("input", () => editor.setRadius(Number(sizeInput.value)));
  const instToggle = h("input", { type: "checkbox", "data-testid": "instance-mode" });
  instToggle.addEventListener("change", () => editor.setInstanceMode(instToggle.checked));
  // fixed width: "new" / "#12 (picked)" must not move the buttons after it
  const instLabel = h("span", { class: "muted fixed-label instance-label", "data-testid": "current-instance" });
  const undoBtn = h("button", { "data-testid": "undo", title: "Undo (Ctrl+Z)", onclick: () => store.undo() }, "↶ Undo");
  const redoBtn = h("button", { "data-testid": "redo", title: "Redo (Ctrl+Shift+Z)", onclick: () => store.redo() }, "↷ Redo");
  const saveBtn = h("button", { class: "primary", "data-testid": "save", title: "Save (Ctrl+S)", onclick: () => void store.save() }, "Save");
  const opacity = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: viewer.maskOpacity, "data-testid": "mask-opacity", title: "mask opacity (O toggles)" });
  const hideBg = h("input", { type: "checkbox", checked: viewer.hideBackground, "data-testid": "hide-background" });
  hideBg.addEventListener("change", () => viewer.setHideBackground(hideBg.checked));
  viewer.onMaskStyleChange.push(() => (hideBg.checked = viewer.hideBackground));
  opacity.addEventListener("input", () => {
    viewer.maskOpacity = Number(opacity.value);
    viewer.requestRender();
  });

  toolbar.append(
    h("span", { class: "group" }, ...toolButtons.values()),
    h("span", { class: "group classes" }, ...classButtons.values()),
    h("label", { class: "group" }, "radius ", sizeInput),
    h("label", { class: "group" }, instToggle, " instances ", instLabel),
    h("span", { class: "group" }, undoBtn, redoBtn),
    h("label", { class: "group" }, "mask ", opacity),
    h("label", { class: "group", title: "do not draw the background class (it is still saved)" }, hideBg, " hide background"),
    h("span", { class: "group" }, h("button", { "data-testid": "fit", onclick: () => viewer.fit(), title: "Fit (0)" }, "Fit"), h("button", { "data-testid": "help", onclick: p.help, title: "Shortcuts (?)" }, "?")),
    p.ext,
    h("span", { class: "group" }, saveBtn),
  );
  if (!canEdit) {
    [...toolButtons.values(), ...classButtons.values(), saveBtn, undoBtn, redoBtn].forEach((b) => (b.disabled = true));
    toolbar.prepend(h("span", { class: "badge" }, "read only (viewer)"));
  }

  const syncTool = () => toolButtons.forEach((b, id) => b.classList.toggle("active", id === tools.active.id));
  const syncEditor = () => {
    classButtons.forEach((b, c) => b.classList.toggle("active", c === editor.cls));
    if (Number(sizeInput.value) !== editor.radius) sizeInput.value = String(editor.radius);
    instToggle.checked = editor.instanceMode;
    instLabel.textContent = editor.instanceLabel();
  };
  tools.onChange(syncTool);
  editor.onChange(syncEditor);
  syncTool();
  syncEditor();
  return {
    syncHistory: () => {
      undoBtn.disabled = !canEdit || !store.strokes.length;
      redoBtn.disabled = !canEdit || !store.redoStack.length;
    },
    toggleMask: () => {
      viewer.maskOpacity = viewer.maskOpacity > 0 ? 0 : Number(opacity.value) || 0.5;
      viewer.requestRender();
    },
  };
}
