/** Brush and eraser: a stroke of discs of the editor's radius, painted live while the pointer moves. */
import type { Stroke } from "../../raster";
import type { DrawContext, Tool, ToolContext, ToolFactory, ToolPointer } from "./types";

function paintTool(kind: "brush" | "eraser", ctx: ToolContext): Tool {
  let live: Stroke | null = null;
  const { editor, store } = ctx;
  return {
    id: kind,
    label: kind === "brush" ? "Brush" : "Eraser",
    key: kind === "brush" ? "B" : "E",
    help: kind === "brush" ? "brush" : "eraser",
    cursor: "crosshair",
    usesClass: kind === "brush",
    onPointerDown(e: ToolPointer) {
      const p = e.point;
      live = kind === "eraser"
        ? { tool: "eraser", class: 0, radius: editor.radius, points: [p] }
        : { tool: "brush", radius: editor.radius, points: [p], ...editor.ink() };
      store.paintLive(live, 0);
      ctx.maskChanged();
      e.capture();
    },
    onPointerMove(e: ToolPointer) {
      if (!live) return;
      const from = live.points.length;
      for (const p of e.points) {
        const last = live.points[live.points.length - 1];
        if (p[0] !== last[0] || p[1] !== last[1]) live.points.push(p);
      }
      if (live.points.length > from) {
        store.paintLive(live, from);
        ctx.maskChanged();
      }
    },
    onPointerUp() {
      if (!live) return;
      store.add(live, true);
      editor.strokeDone();
      live = null;
    },
    draw(d: DrawContext) {
      if (!d.cursor) return;
      const [ix, iy] = d.toImage(...d.cursor);
      const [sx, sy] = d.toScreen(Math.floor(ix) + 0.5, Math.floor(iy) + 0.5);
      d.ctx.beginPath();
      d.ctx.arc(sx, sy, Math.max(1, (editor.radius + 0.5) * d.scale), 0, Math.PI * 2);
      d.ctx.strokeStyle = kind === "eraser" ? "#ffffff" : d.colorOf(editor.cls);
      d.ctx.lineWidth = 1.5;
      d.ctx.stroke();
    },
  };
}

export const brushTool: ToolFactory = (ctx) => paintTool("brush", ctx);
export const eraserTool: ToolFactory = (ctx) => paintTool("eraser", ctx);
