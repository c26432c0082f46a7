/**
 * Pick: click an object to keep painting it (its class becomes the current class); Shift+click another
 * object to merge it into the picked one; a click on no object starts a new one.
 */
import { inside, type ToolFactory } from "./types";

export const pickTool: ToolFactory = (ctx) => ({
  id: "pick",
  label: "Pick",
  key: "K",
  help: "pick instance",
  cursor: "crosshair",
  usesClass: false,
  onPointerDown(e) {
    const p = e.point;
    if (!inside(ctx, p)) return;
    const { editor, store } = ctx;
    const at = p[1] * ctx.width + p[0];
    const id = store.masks.instances[at];
    if (e.shiftKey && editor.currentInstance && id && id !== editor.currentInstance) {
      store.add({ tool: "instance_merge", class: 0, radius: 0, points: [p], instance: editor.currentInstance, from: id });
      ctx.notify(`Merged #${id} into #${editor.currentInstance}`);
      return;
    }
    if (id) editor.pickInstance(id);
    else editor.newObject();
    const c = store.masks.classes[at];
    if (c >= 2) editor.setClass(c);
  },
});
