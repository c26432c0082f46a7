/**
 * Annotate page: /projects/{projectId}/images/{imageId}/annotate
 *
 * Put together from parts (src/annotate/): the layout, the editor state, the tool controller with its
 * tools, the shortcut table, the toolbar, the save status, canvas input and the side panels. Pointer
 * events become strokes (data) that the rasteriser paints; the AnnotationStore saves them. Extensions
 * (prediction overlays, panels) register with `annotateHooks` in src/extensions.ts.
 */
import { api, type ImageInfo, type Project } from "../api";
import { AnnotationStore } from "../annotation";
import { annotateHooks } from "../annotate/context";
import { conflictDialog } from "../annotate/conflict";
import { ToolController } from "../annotate/controller";
import { EditorState } from "../annotate/editor";
import { KeyMap } from "../annotate/keymap";
import { appendShown, annotateLayout } from "../annotate/layout";
import { channelPanel, overlayPanel, restoreChannels } from "../annotate/panels";
import { attachCanvasInput } from "../annotate/pointer";
import { SaveStatus } from "../annotate/save-status";
import { annotateShortcuts } from "../annotate/shortcuts";
import { fillToolbar } from "../annotate/toolbar";
import { TOOLS } from "../annotate/tools";
import type { ToolContext } from "../annotate/tools/types";
import { runWithCleanup } from "../hooks";
import { registerRoute, type Cleanup } from "../router";
import { dialog, errorBlock, h, renderNav, showError, toast } from "../ui";
import { rgb, Viewer } from "../viewer";
import { loadProject, OBJECT_DIAMETER_MAX, OBJECT_DIAMETER_MIN, saveObjectDiameter } from "./project";

async function renderAnnotate(root: HTMLElement, params: Record<string, string>): Promise<Cleanup | void> {
  const pid = params.projectId;
  const iid = Number(params.imageId);
  renderNav(pid);
  let project: Project, image: ImageInfo;
  try {
    [project, image] = await Promise.all([loadProject(pid), api.get<ImageInfo>(`/images/${iid}/`)]);
  } catch (err) {
    root.className = "annotate-page";
    root.append(errorBlock(err, "Could not open the image"));
    return;
  }
  renderNav(pid, project.name);
  const canEdit = project.my_role !== "viewer";
  const status = new SaveStatus();
  const layout = annotateLayout(root, project, image, status.el);

  const viewer = new Viewer(layout.stage, image);
  viewer.classColors = new Map(project.classes.map((c) => [c.index, rgb(c.color)]));
  viewer.onError = (m) => toast(m, "error");
  (window as unknown as { labseg: unknown }).labseg = { viewer }; // for debugging and browser tests
  const store = new AnnotationStore(iid, image.width, image.height);
  const channelsRestored = restoreChannels(viewer, `labseg-view-${iid}`);

  const editor = new EditorState(project.classes.map((c) => c.index), () => store.newInstanceId());
  const tools = new ToolController(TOOLS, toolContext(editor, store, viewer, project.my_role === "owner" ? pid : null));
  /** A class button or key: a tool that does not paint a class (eraser, pick) gives way to the brush. */
  const chooseClass = (c: number) => {
    if (editor.setClass(c) && !tools.active.usesClass) tools.activate("brush");
  };
  const keys = new KeyMap();
  const help = () => showHelp(keys);
  const toolbar = fillToolbar(layout.toolbar, { project, canEdit, tools, editor, store, viewer, ext: layout.extToolbar, chooseClass, help });
  // the picked object stands out (pick tool, or a click with it): brighter, outlined in yellow
  editor.onChange(() => {
    viewer.setHighlightInstance(editor.pinned ? editor.currentInstance : 0);
    viewer.requestRender();
  });
  const input = attachCanvasInput(viewer, tools, {
    canEdit,
    info: layout.info,
    colorOf: (cls) => project.classes.find((c) => c.index === cls)?.color ?? "#fff",
  });
  annotateShortcuts(tools, editor, {
    undo: () => store.undo(),
    redo: () => store.redo(),
    save: () => void store.save(),
    chooseClass,
    setPanKey: input.setPanKey,
    fit: () => viewer.fit(),
    toggleMask: toolbar.toggleMask,
    deletePicked: () => {
      store.add({ tool: "instance_delete", class: 0, radius: 0, points: [], instance: editor.currentInstance });
      editor.newObject();
    },
    help,
  }).forEach((b) => keys.add(b));

  layout.side.append(channelPanel(viewer), overlayPanel(viewer), layout.extPanel);

  store.onState = (s) => {
    status.show(s, store.version, store.lastError);
    toolbar.syncHistory();
  };
  store.onChange = () => {
    viewer.setMasks(store.masks); // undo/reload replace the mask arrays
    viewer.maskChanged();
    toolbar.syncHistory();
  };
  store.onConflict = (c) => void conflictDialog(store, c, project);
  const unlisten = listenWindow(keys, store);

  // --- load ---------------------------------------------------------------------------------
  viewer.setMasks(store.masks);
  try {
    const restored = await store.load();
    if (restored) toast("Restored unsaved strokes from a local draft; saving them now.", "info", 6000);
  } catch (err) {
    showError(err, "Could not load the annotation");
    status.loadFailed();
  }
  if (!image.display_range?.length) image.display_range = [];
  for (let c = 0; c < image.channels; c++) if (!image.display_range[c] && !channelsRestored) void viewer.autoRange(c).catch(() => undefined);

  const extCleanup = runWithCleanup(annotateHooks, {
    project, image, viewer, store, editor, tools, keys, canEdit,
    addToolbar: (...nodes) => appendShown(layout.extToolbar, ...nodes),
    addPanel: (...nodes) => appendShown(layout.extPanel, ...nodes),
  }, (err, name) => showError(err, `The annotate-page extension "${name}" failed`));

  return () => {
    extCleanup();
    if (store.dirty) void store.save();
    unlisten();
    viewer.destroy();
  };
}

/** Shortcuts, and a warning before closing the tab with unsaved strokes; returns the removal. */
function listenWindow(keys: KeyMap, store: AnnotationStore): Cleanup {
  // a key pressed in a dialog (Enter on its focused button) is the dialog's, not the editor's
  const inDialog = (e: KeyboardEvent) => e.target instanceof Element && !!e.target.closest("[role=dialog]");
  const onKey = (e: KeyboardEvent) => void (!inDialog(e) && keys.keydown(e));
  const onKeyUp = (e: KeyboardEvent) => void keys.keyup(e);
  const onBeforeUnload = (e: BeforeUnloadEvent) => {
    if (store.dirty) e.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("beforeunload", onBeforeUnload);
  return () => {
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("keyup", onKeyUp);
    window.removeEventListener("beforeunload", onBeforeUnload);
  };
}

/** What the tools get: the editor state, the store, and the viewer's drawing and scale. */
function toolContext(editor: EditorState, store: AnnotationStore, viewer: Viewer, ownedProject: string | null): ToolContext {
  return {
    editor,
    store,
    width: store.width,
    height: store.height,
    maskChanged: () => viewer.maskChanged(),
    requestRender: () => viewer.requestRender(),
    scale: () => viewer.scale,
    notify: (m) => toast(m),
    offerDiameter: ownedProject === null ? undefined : (px) => offerDiameter(ownedProject, px),
  };
}

/** For owners, after a few measurements: a button that sets the median as the project's object diameter. */
function offerDiameter(pid: string, px: number): void {
  if (px < OBJECT_DIAMETER_MIN || px > OBJECT_DIAMETER_MAX) return;  // outside what the setting takes: the measurement toast says the number anyway
  const note = toast(`Set ${px} px as this project's object diameter?`, "info", 10000);
  note.dataset.testid = "measure-offer";
  note.append(" ", h("button", { class: "link", "data-testid": "measure-set-diameter", onclick: async (e: Event) => {
    e.stopPropagation();
    note.remove();
    try {
      const updated = await saveObjectDiameter(pid, px);
      toast(`Object diameter set to ${updated.object_diameter} px: the next training run splits objects at that size.`, "ok");
    } catch (err) {
      showError(err, "Could not set the object diameter");
    }
  } }, "Set it"));
}

function showHelp(keys: KeyMap): void {
  const rows = keys.helpRows().map(([k, v]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, v)));
  void dialog("Keyboard shortcuts", h("table", { class: "help", "data-testid": "help-overlay" }, ...rows), [{ label: "Close", value: "close", primary: true }]);
}

registerRoute("/projects/:projectId/images/:imageId/annotate", renderAnnotate);
