/** Side-panel sections of the annotate page: channel display settings and overlay controls. */
import { h, showError, slug } from "../ui";
import type { ChannelSetting, Viewer } from "../viewer";

/** Channel colours/ranges the user chose for this image last time (kept in localStorage). */
export function restoreChannels(viewer: Viewer, key: string): boolean {
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
export function channelPanel(viewer: Viewer): HTMLElement {
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

/** Opacity/visibility of the viewer's overlays; hidden until an overlay exists, redrawn when they change. */
export function overlayPanel(viewer: Viewer): HTMLElement {
  const box = h("section", { class: "panel overlays", hidden: true, "data-testid": "overlay-panel" });
  viewer.onOverlaysChange = () => drawOverlayControls(viewer, box);
  return box;
}

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
