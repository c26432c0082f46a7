/**
 * Polygon / lasso: a click adds a vertex, a drag traces a lasso that closes on release; Enter or a
 * double click closes the polygon, Escape drops it.
 */
import type { ToolFactory } from "./types";

export const polygonTool: ToolFactory = (ctx) => {
  let polygon: Array<[number, number]> = [];
  let dragging = false;
  let lassoMoved = false;
  const close = () => {
    const pts = polygon.filter((p, i) => i === 0 || p[0] !== polygon[i - 1][0] || p[1] !== polygon[i - 1][1]);
    polygon = [];
    if (pts.length >= 3) ctx.store.add({ tool: "polygon", radius: 0, points: pts, ...ctx.editor.ink() });
    ctx.editor.strokeDone();
    ctx.requestRender();
  };
  const drop = () => {
    polygon = [];
    ctx.requestRender();
  };
  return {
    id: "polygon",
    label: "Polygon",
    key: "P",
    help: "polygon (click vertices) or lasso (drag)",
    cursor: "crosshair",
    usesClass: true,
    deactivate: () => {
      polygon = [];
      dragging = false;
    },
    onPointerDown(e) {
      polygon.push(e.point);
      lassoMoved = false;
      dragging = true;
      e.capture();
    },
    onPointerMove(e) {
      if (!dragging || !(e.buttons & 1)) return;
      const last = polygon[polygon.length - 1];
      if (Math.abs(e.point[0] - last[0]) + Math.abs(e.point[1] - last[1]) >= Math.max(1, 3 / ctx.scale())) {
        polygon.push(e.point);
        lassoMoved = true;
      }
    },
    onPointerUp(e) {
      if (!dragging) return;
      dragging = false;
      if (lassoMoved && e.type === "pointerup") close(); // the end of a lasso drag
    },
    commit: close,
    cancel: drop,
    draw(d) {
      if (!polygon.length) return;
      d.ctx.beginPath();
      polygon.forEach(([x, y], i) => {
        const [sx, sy] = d.toScreen(x + 0.5, y + 0.5);
        if (i === 0) d.ctx.moveTo(sx, sy);
        else d.ctx.lineTo(sx, sy);
      });
      if (d.cursor) d.ctx.lineTo(d.cursor[0], d.cursor[1]);
      d.ctx.strokeStyle = "#ffff00";
      d.ctx.lineWidth = 1.5;
      d.ctx.stroke();
    },
  };
};
