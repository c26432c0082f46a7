/** Fill: flood the connected region under the click with the chosen class (and object, in instance mode). */
import { inside, type ToolFactory } from "./types";

export const fillTool: ToolFactory = (ctx) => ({
  id: "fill",
  label: "Fill",
  key: "F",
  help: "fill",
  cursor: "crosshair",
  usesClass: true,
  onPointerDown(e) {
    if (inside(ctx, e.point)) ctx.store.add({ tool: "fill", radius: 0, points: [e.point], ...ctx.editor.ink() });
    ctx.editor.strokeDone();
  },
});
