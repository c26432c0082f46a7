/**
 * Annotate page: /projects/{projectId}/images/{imageId}/annotate
 *
 * Canvas viewer + brush editor. Pointer events (mouse, pen, touch alike) become strokes (data) that
 * the rasteriser paints; the AnnotationStore saves them. Other features hook in with
 * {@link onAnnotatePage} (e.g. prediction overlays) without editing this file.
 */
import { api, type ImageInfo, type Project } from "../api";
import { AnnotationStore, type Conflict, type SaveState } from "../annotation";
import type { Stroke, Tool } from "../raster";
import { registerRoute, type Cleanup } from "../router";
import { dialog, errorBlock, h, renderNav, showError, slug, toast } from "../ui";
import { rgb, Viewer, type ChannelSetting } from "../viewer";
import { annotateUrl, loadProject } from "./project";

/** What an extension of the annotate page gets. */
export interface AnnotateContext {
  project: Project;
  image: ImageInfo;
  viewer: Viewer;
  store: AnnotationStore;
  /** An empty toolbar group for the extension's buttons (hidden while empty). */
  toolbar: HTMLElement;
  /** An empty side-panel section for the extension (hidden while empty). */
  panel: HTMLElement;
}
type Extension = (ctx: AnnotateContext) => void | Cleanup;
const extensions: Extension[] = [];

/** Register code that runs on every annotate page (it may return a cleanup). */
export function onAnnotatePage(ext: Extension): void {
  extensions.push(ext);
}

type EditTool = "brush" | "eraser" | "fill" | "polygon" | "pick";

const SHORTCUTS: Array<[string, string]> = [
  ["B / E / F / P / K", "brush / eraser / fill / polygon-lasso / pick instance"],
  ["1 … 9", "class with that index"],
  ["[ / ]", "smaller / larger brush"],
  ["wheel", "zoom to the cursor"],
  ["space-drag / middle drag", "pan"],
  ["0", "fit the image"],
  ["I", "instance mode on/off (each new object gets a new id)"],
  ["Shift+click (pick)", "merge the clicked instance into the picked one"],
  ["N", "new object (stop painting the picked instance)"],
  ["Delete", "delete the picked instance"],
  ["Enter / Esc", "close / cancel the polygon"],
  ["Ctrl+Z / Ctrl+Shift+Z", "undo / redo"],
  ["Ctrl+S", "save now"],
  ["O", "mask on/off"],
  ["?", "this help"],
];

async function renderAnnotate(root: HTMLElement, params: Record<string, string>): Promise<Cleanup | void> {
  const pid = params.projectId;
  const iid = Number(params.imageId);
  renderNav(pid);
  root.className = "annotate-page";
  let project: Project, image: ImageInfo;
  try {
    [project, image] = await Promise.all([loadProject(pid), api.get<ImageInfo>(`/images/${iid}/`)]);
  } catch (err) {
    root.append(errorBlock(err, "Could not open the image"));
    return;
  }
  renderNav(pid, project.name);
  const canEdit = project.my_role !== "viewer";

  // --- layout ------------------------------------------------------------------------------
  const stage = h("div", { class: "stage" });
  const toolbar = h("div", { class: "toolbar" });
  const side = h("aside", { class: "side" });
  const statusEl = h("span", { class: "save-status", "data-testid": "save-status", role: "status" }, "loading…");
  const info = h("span", { class: "muted coords" });
  root.append(h("div", { class: "annotate-head" }, h("strong", {}, image.original_filename), h("span", { class: "muted" }, ` ${image.width}×${image.height} · ${image.channels}ch ${image.dtype}`), navLinks(project.id, iid), info, statusEl), toolbar, h("div", { class: "annotate-body" }, stage, side));

  const viewer = new Viewer(stage, image);
  viewer.classColors = new Map(project.classes.map((c) => [c.index, rgb(c.color)]));
  viewer.onError = (m) => toast(m, "error");
  (window as unknown as { labseg: unknown }).labseg = { viewer }; // for debugging and browser tests
  const store = new AnnotationStore(iid, image.width, image.height);
  const channelsRestored = restoreChannels(viewer, `labseg-view-${iid}`);

  // --- editor state ------------------------------------------------------------------------
  let tool: EditTool = "brush";
  let cls = project.classes.find((c) => c.index >= 2)?.index ?? project.classes[0]?.index ?? 1;
  let radius = 6;
  let instanceMode = false;
  let currentInstance = 0;
  /** A picked instance keeps receiving strokes until "new object" (N); otherwise each stroke is a new object. */
  let pinned = false;
  let lassoMoved = false;
  let polygon: Array<[number, number]> = [];
  let live: Stroke | null = null;
  let pan: { x: number; y: number } | null = null;
  let spaceDown = false;
  let cursor: [number, number] | null = null;

  const toolButtons = new Map<EditTool, HTMLButtonElement>();
  const classButtons = new Map<number, HTMLButtonElement>();
  const mkTool = (t: EditTool, label: string, key: string) => {
    const b = h("button", { class: "tool", "data-testid": `tool-${t}`, title: `${label} (${key})`, onclick: () => setTool(t) }, label);
    toolButtons.set(t, b);
    return b;
  };
  const sizeInput = h("input", { type: "number", min: 0, max: 200, value: radius, "data-testid": "brush-size", title: "brush radius in image pixels ([ and ])" });
  sizeInput.addEventListener("input", () => setRadius(Number(sizeInput.value)));
  const instToggle = h("input", { type: "checkbox", "data-testid": "instance-mode" });
  instToggle.addEventListener("change", () => setInstanceMode(instToggle.checked));
  const instLabel = h("span", { class: "muted", "data-testid": "current-instance" });
  const undoBtn = h("button", { "data-testid": "undo", title: "Undo (Ctrl+Z)", onclick: () => store.undo() }, "↶ Undo");
  const redoBtn = h("button", { "data-testid": "redo", title: "Redo (Ctrl+Shift+Z)", onclick: () => store.redo() }, "↷ Redo");
  const saveBtn = h("button", { class: "primary", "data-testid": "save", title: "Save (Ctrl+S)", onclick: () => void store.save() }, "Save");
  const opacity = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: viewer.maskOpacity, "data-testid": "mask-opacity", title: "mask opacity (O toggles)" });
  opacity.addEventListener("input", () => {
    viewer.maskOpacity = Number(opacity.value);
    viewer.requestRender();
  });
  const extToolbar = h("span", { class: "group ext", hidden: true });

  toolbar.append(
    h("span", { class: "group" }, mkTool("brush", "Brush", "B"), mkTool("eraser", "Eraser", "E"), mkTool("fill", "Fill", "F"), mkTool("polygon", "Polygon", "P"), mkTool("pick", "Pick", "K")),
    h("span", { class: "group classes" }, ...project.classes.map((c) => {
      const b = h("button", { class: "class-btn", "data-testid": `class-${c.index}`, title: `${c.name} (${c.index})`, onclick: () => setClass(c.index) }, h("span", { class: "swatch", style: { background: c.color } }), `${c.index} ${c.name}`);
      classButtons.set(c.index, b);
      return b;
    })),
    h("label", { class: "group" }, "radius ", sizeInput),
    h("label", { class: "group" }, instToggle, " instances ", instLabel),
    h("span", { class: "group" }, undoBtn, redoBtn),
    h("label", { class: "group" }, "mask ", opacity),
    h("span", { class: "group" }, h("button", { "data-testid": "fit", onclick: () => viewer.fit(), title: "Fit (0)" }, "Fit"), h("button", { "data-testid": "help", onclick: () => showHelp(), title: "Shortcuts (?)" }, "?")),
    extToolbar,
    h("span", { class: "group" }, saveBtn),
  );
  if (!canEdit) {
    toolbar.querySelectorAll("button.tool, .classes button, [data-testid=save], [data-testid=undo], [data-testid=redo]").forEach((b) => ((b as HTMLButtonElement).disabled = true));
    toolbar.prepend(h("span", { class: "badge" }, "read only (viewer)"));
  }

  const setTool = (t: EditTool) => {
    tool = t;
    polygon = [];
    toolButtons.forEach((b, k) => b.classList.toggle("active", k === t));
    viewer.requestRender();
  };
  const setClass = (c: number) => {
    if (!classButtons.has(c)) return;
    cls = c;
    classButtons.forEach((b, k) => b.classList.toggle("active", k === c));
    if (tool === "eraser" || tool === "pick") setTool("brush");
  };
  const setRadius = (r: number) => {
    radius = Math.max(0, Math.min(200, Math.round(r) || 0));
    if (Number(sizeInput.value) !== radius) sizeInput.value = String(radius);
    viewer.requestRender();
  };
  const setInstanceMode = (on: boolean) => {
    instanceMode = on;
    instToggle.checked = on;
    newObject();
  };
  /** The next stroke starts a new object. */
  const newObject = () => {
    currentInstance = 0;
    pinned = false;
    updateInstLabel();
  };
  /** After a stroke: a new object next time, unless an instance was picked. */
  const strokeDone = () => {
    if (instanceMode && !pinned) currentInstance = 0;
    updateInstLabel();
  };
  const updateInstLabel = () => (instLabel.textContent = instanceMode ? (currentInstance ? `#${currentInstance}${pinned ? " (picked)" : ""}` : "new") : "");
  setTool("brush");
  setClass(cls);

  // --- side panel: channels, overlays, extension panel --------------------------------------
  side.append(channelPanel(viewer));
  const overlayBox = h("section", { class: "panel overlays", hidden: true, "data-testid": "overlay-panel" });
  const extPanel = h("section", { class: "panel ext", hidden: true });
  side.append(overlayBox, extPanel);
  viewer.onOverlaysChange = () => drawOverlayControls(viewer, overlayBox);
  const watchEmpty = new MutationObserver(() => {
    extToolbar.hidden = !extToolbar.childElementCount;
    extPanel.hidden = !extPanel.childElementCount;
  });
  watchEmpty.observe(extToolbar, { childList: true });
  watchEmpty.observe(extPanel, { childList: true });

  // --- save status -------------------------------------------------------------------------
  const LABEL: Record<SaveState, string> = { saved: "✓ saved", unsaved: "● unsaved changes", saving: "saving…", error: "⚠ not saved", conflict: "⚠ conflict: not saved", loading: "loading…" };
  store.onState = (s) => {
    statusEl.textContent = LABEL[s] + (s === "error" && store.lastError ? `: ${store.lastError} (kept as a local draft)` : "") + (s === "saved" ? ` (v${store.version})` : "");
    statusEl.className = `save-status ${s}`;
    statusEl.dataset.state = s;
    undoBtn.disabled = !canEdit || !store.strokes.length;
    redoBtn.disabled = !canEdit || !store.redoStack.length;
  };
  store.onChange = () => {
    viewer.maskChanged();
    undoBtn.disabled = !canEdit || !store.strokes.length;
    redoBtn.disabled = !canEdit || !store.redoStack.length;
  };
  store.onConflict = (c) => void conflictDialog(store, c, project);

  // --- pointer input -----------------------------------------------------------------------
  const canvas = viewer.canvas;
  const imagePoint = (e: PointerEvent): [number, number] => {
    const [x, y] = viewer.screenToImage(...viewer.eventPos(e));
    return [Math.floor(x), Math.floor(y)];
  };
  const ink = (): { class: number; instance?: number } => {
    if (!instanceMode || cls <= 1) return { class: cls };
    if (!currentInstance) currentInstance = store.newInstanceId();
    updateInstLabel();
    return { class: cls, instance: currentInstance };
  };

  canvas.addEventListener("pointerdown", (e) => {
    canvas.focus();
    if (e.button === 1 || (e.button === 0 && spaceDown)) {
      pan = { x: e.clientX, y: e.clientY };
      canvas.setPointerCapture(e.pointerId);
      canvas.style.cursor = "grabbing";
      e.preventDefault();
      return;
    }
    if (e.button !== 0 || !canEdit) return;
    const p = imagePoint(e);
    if (tool === "brush" || tool === "eraser") {
      live = tool === "eraser" ? { tool: "eraser", class: 0, radius, points: [p] } : { tool: "brush", radius, points: [p], ...ink() };
      store.paintLive(live, 0);
      viewer.maskChanged();
      canvas.setPointerCapture(e.pointerId);
    } else if (tool === "fill") {
      if (p[0] >= 0 && p[1] >= 0 && p[0] < image.width && p[1] < image.height) store.add({ tool: "fill", radius: 0, points: [p], ...ink() });
      strokeDone();
    } else if (tool === "polygon") {
      polygon.push(p);
      lassoMoved = false;
      live = { tool: "polygon", class: cls, radius: 0, points: polygon }; // click = vertex, drag = lasso
      canvas.setPointerCapture(e.pointerId);
    } else if (tool === "pick") {
      if (p[0] < 0 || p[1] < 0 || p[0] >= image.width || p[1] >= image.height) return;
      const id = store.masks.instances[p[1] * image.width + p[0]];
      if (e.shiftKey && currentInstance && id && id !== currentInstance) {
        store.add({ tool: "instance_merge", class: 0, radius: 0, points: [p], instance: currentInstance, from: id });
        toast(`Merged #${id} into #${currentInstance}`);
      } else {
        if (id) {
          if (!instanceMode) setInstanceMode(true);
          currentInstance = id;
          pinned = true;
        } else newObject();
        const c = store.masks.classes[p[1] * image.width + p[0]];
        if (c >= 2) setClass(c);
        setTool("pick");
      }
      updateInstLabel();
    }
  });
  canvas.addEventListener("pointermove", (e) => {
    cursor = viewer.eventPos(e);
    const [ix, iy] = viewer.screenToImage(...cursor);
    info.textContent = ` x ${Math.floor(ix)}, y ${Math.floor(iy)} · zoom ${(viewer.scale * 100).toFixed(0)}%`;
    if (pan) {
      viewer.panBy(e.clientX - pan.x, e.clientY - pan.y);
      pan = { x: e.clientX, y: e.clientY };
      return;
    }
    if (live && (live.tool === "brush" || live.tool === "eraser")) {
      const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [e];
      const from = live.points.length;
      for (const ev of events.length ? events : [e]) {
        const p = imagePoint(ev);
        const last = live.points[live.points.length - 1];
        if (p[0] !== last[0] || p[1] !== last[1]) live.points.push(p);
      }
      if (live.points.length > from) {
        store.paintLive(live, from);
        viewer.maskChanged();
      }
      return;
    }
    if (live && live.tool === "polygon" && e.buttons & 1) {
      const p = imagePoint(e);
      const last = polygon[polygon.length - 1];
      if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) >= Math.max(1, 3 / viewer.scale)) {
        polygon.push(p);
        lassoMoved = true;
      }
    }
    viewer.requestRender();
  });
  const endPointer = (e: PointerEvent) => {
    if (pan) {
      pan = null;
      canvas.style.cursor = "";
      return;
    }
    if (!live) return;
    if (live.tool === "brush" || live.tool === "eraser") {
      store.add(live, true);
      strokeDone();
      live = null;
    } else if (live.tool === "polygon") {
      live = null;
      if (lassoMoved && e.type === "pointerup") closePolygon(); // the end of a lasso drag
    }
  };
  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("pointerleave", () => {
    cursor = null;
    viewer.requestRender();
  });
  canvas.addEventListener("dblclick", () => tool === "polygon" && closePolygon());
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [sx, sy] = viewer.eventPos(e);
    viewer.zoomAt(sx, sy, Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
  }, { passive: false });
  canvas.tabIndex = 0;

  const closePolygon = () => {
    const pts = polygon.filter((p, i) => i === 0 || p[0] !== polygon[i - 1][0] || p[1] !== polygon[i - 1][1]);
    polygon = [];
    if (pts.length >= 3) store.add({ tool: "polygon", radius: 0, points: pts, ...ink() });
    strokeDone();
    viewer.requestRender();
  };

  // brush cursor (a circle of the brush radius) and the polygon in progress
  viewer.drawTop = (ctx) => {
    if (polygon.length) {
      ctx.beginPath();
      polygon.forEach(([x, y], i) => {
        const [sx, sy] = viewer.imageToScreen(x + 0.5, y + 0.5);
        if (i === 0) ctx.moveTo(sx, sy);
        else ctx.lineTo(sx, sy);
      });
      if (cursor) ctx.lineTo(cursor[0], cursor[1]);
      ctx.strokeStyle = "#ffff00";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    if (cursor && (tool === "brush" || tool === "eraser")) {
      const [ix, iy] = viewer.screenToImage(...cursor);
      const [sx, sy] = viewer.imageToScreen(Math.floor(ix) + 0.5, Math.floor(iy) + 0.5);
      ctx.beginPath();
      ctx.arc(sx, sy, Math.max(1, (radius + 0.5) * viewer.scale), 0, Math.PI * 2);
      ctx.strokeStyle = tool === "eraser" ? "#ffffff" : project.classes.find((c) => c.index === cls)?.color ?? "#fff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  };
  canvas.style.cursor = "crosshair";

  // --- keyboard ----------------------------------------------------------------------------
  const onKey = (e: KeyboardEvent) => {
    const t = e.target as HTMLElement;
    if (t && (t.tagName === "INPUT" && (t as HTMLInputElement).type !== "range" && (t as HTMLInputElement).type !== "checkbox" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && (k === "z" || k === "Z")) {
      e.preventDefault();
      if (e.shiftKey) store.redo();
      else store.undo();
    } else if (mod && (k === "y" || k === "Y")) {
      e.preventDefault();
      store.redo();
    } else if (mod && (k === "s" || k === "S")) {
      e.preventDefault();
      void store.save();
    } else if (mod) {
      return;
    } else if (k === " ") {
      spaceDown = true;
      canvas.style.cursor = "grab";
      e.preventDefault();
    } else if (/^[1-9]$/.test(k)) setClass(Number(k));
    else if (k === "b" || k === "B") setTool("brush");
    else if (k === "e" || k === "E") setTool("eraser");
    else if (k === "f" || k === "F") setTool("fill");
    else if (k === "p" || k === "P") setTool("polygon");
    else if (k === "k" || k === "K") setTool("pick");
    else if (k === "i" || k === "I") setInstanceMode(!instanceMode);
    else if (k === "n" || k === "N") newObject();
    else if (k === "[") setRadius(radius - 1);
    else if (k === "]") setRadius(radius + 1);
    else if (k === "0") viewer.fit();
    else if (k === "o" || k === "O") {
      viewer.maskOpacity = viewer.maskOpacity > 0 ? 0 : Number(opacity.value) || 0.5;
      viewer.requestRender();
    } else if (k === "Enter" && tool === "polygon") closePolygon();
    else if (k === "Escape") {
      polygon = [];
      viewer.requestRender();
    } else if ((k === "Delete" || k === "Backspace") && currentInstance) {
      store.add({ tool: "instance_delete", class: 0, radius: 0, points: [], instance: currentInstance });
      newObject();
    } else if (k === "?") showHelp();
  };
  const onKeyUp = (e: KeyboardEvent) => {
    if (e.key === " ") {
      spaceDown = false;
      canvas.style.cursor = "crosshair";
    }
  };
  const onBeforeUnload = (e: BeforeUnloadEvent) => {
    if (store.dirty) e.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("beforeunload", onBeforeUnload);

  // --- load ---------------------------------------------------------------------------------
  viewer.setMasks(store.masks);
  const origOnChange = store.onChange;
  store.onChange = (r) => {
    viewer.setMasks(store.masks); // undo/reload replace the mask arrays
    origOnChange?.(r);
  };
  try {
    const restored = await store.load();
    if (restored) toast("Restored unsaved strokes from a local draft; saving them now.", "info", 6000);
  } catch (err) {
    showError(err, "Could not load the annotation");
    statusEl.textContent = "⚠ annotation not loaded";
  }
  if (!image.display_range?.length) image.display_range = [];
  for (let c = 0; c < image.channels; c++) if (!image.display_range[c] && !channelsRestored) void viewer.autoRange(c).catch(() => undefined);

  const extCleanups = extensions.map((ext) => {
    try {
      return ext({ project, image, viewer, store, toolbar: extToolbar, panel: extPanel });
    } catch (err) {
      showError(err, "An annotate-page extension failed");
      return undefined;
    }
  });

  return () => {
    extCleanups.forEach((c) => c && c());
    if (store.dirty) void store.save();
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("keyup", onKeyUp);
    window.removeEventListener("beforeunload", onBeforeUnload);
    watchEmpty.disconnect();
    viewer.destroy();
  };
}

/** Previous / next image links (by id order in the project). */
function navLinks(projectId: number, imageId: number): HTMLElement {
  const box = h("span", { class: "img-nav" });
  void api.get<{ results?: ImageInfo[] } | ImageInfo[]>(`/projects/${projectId}/images/?page_size=1000`).then((r) => {
    const list = Array.isArray(r) ? r : r.results ?? [];
    const i = list.findIndex((im) => im.id === imageId);
    if (i > 0) box.append(h("a", { href: annotateUrl(projectId, list[i - 1].id), "data-testid": "prev-image" }, "‹ prev"));
    if (i >= 0 && i < list.length - 1) box.append(h("a", { href: annotateUrl(projectId, list[i + 1].id), "data-testid": "next-image" }, "next ›"));
  }).catch(() => undefined);
  return box;
}

/** Channel colours/ranges the user chose for this image last time (kept in localStorage). */
function restoreChannels(viewer: Viewer, key: string): boolean {
  let restored = false;
  try {
    const saved = JSON.parse(localStorage.getItem(key) || "null") as ChannelSetting[] | null;
    if (Array.isArray(saved) && saved.length === viewer.channels.length) {
      saved.forEach((c, i) => Object.assign(viewer.channels[i], c));
      restored = true;
    }
  } catch {
    /* unreadable: keep the defaults */
  }
  viewer.onChannelsChange = () => {
    try {
      localStorage.setItem(key, JSON.stringify(viewer.channels));
    } catch {
      /* storage full or disabled */
    }
  };
  return restored;
}

/** Per-channel visibility, colour, min/max and auto contrast. */
function channelPanel(viewer: Viewer): HTMLElement {
  const box = h("section", { class: "panel channels", "data-testid": "channel-panel" }, h("h3", {}, "Channels"));
  viewer.channels.forEach((ch, c) => {
    const vis = h("input", { type: "checkbox", checked: ch.visible, "data-testid": `channel-${c}-visible` });
    const color = h("input", { type: "color", value: ch.color, "data-testid": `channel-${c}-color` });
    const min = h("input", { type: "number", value: Math.round(ch.min), "data-testid": `channel-${c}-min` });
    const max = h("input", { type: "number", value: Math.round(ch.max), "data-testid": `channel-${c}-max` });
    const auto = h("button", { "data-testid": `channel-${c}-auto`, title: "auto contrast from the histogram (0.5–99.5 %)" }, "auto");
    const sync = () => {
      min.value = String(Math.round(viewer.channels[c].min));
      max.value = String(Math.round(viewer.channels[c].max));
    };
    vis.addEventListener("change", () => viewer.setChannel(c, { visible: vis.checked }));
    color.addEventListener("input", () => viewer.setChannel(c, { color: color.value }));
    const range = () => {
      const lo = Number(min.value), hi = Number(max.value);
      if (isFinite(lo) && isFinite(hi) && hi > lo) viewer.setChannel(c, { min: lo, max: hi });
    };
    min.addEventListener("change", range);
    max.addEventListener("change", range);
    auto.addEventListener("click", async () => {
      try {
        await viewer.autoRange(c);
        sync();
      } catch (err) {
        showError(err, "Auto contrast failed");
      }
    });
    box.append(h("div", { class: "channel-row", "data-testid": `channel-${c}` }, vis, ` ch ${c} `, color, h("br"), "min ", min, " max ", max, " ", auto));
  });
  return box;
}

/** Controls for the overlays the viewer has (none shown until an overlay is set). */
function drawOverlayControls(viewer: Viewer, box: HTMLElement): void {
  const names = viewer.overlayNames();
  box.hidden = names.length === 0;
  box.replaceChildren(h("h3", {}, "Overlays"));
  for (const name of names) {
    const o = viewer.overlay(name)!;
    const vis = h("input", { type: "checkbox", checked: o.visible, "data-testid": `overlay-${slug(name)}-visible` });
    const op = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: o.opacity, "data-testid": `overlay-${slug(name)}-opacity` });
    vis.addEventListener("change", () => viewer.setOverlay(name, null, { visible: vis.checked }));
    op.addEventListener("input", () => viewer.setOverlay(name, null, { opacity: Number(op.value) }));
    box.append(h("div", { class: "overlay-row" }, vis, ` ${name} `, op));
  }
}

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

/** 409: show theirs next to mine and let the user choose; never drop work silently. */
async function conflictDialog(store: AnnotationStore, c: Conflict, project: Project): Promise<void> {
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

function showHelp(): void {
  void dialog("Keyboard shortcuts", h("table", { class: "help", "data-testid": "help-overlay" }, ...SHORTCUTS.map(([k, v]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, v)))), [{ label: "Close", value: "close", primary: true }]);
}

registerRoute("/projects/:projectId/images/:imageId/annotate", renderAnnotate);
export type { Tool };
