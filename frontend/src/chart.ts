/** A small line chart on a canvas (the training loss curve): pure scaling + drawing, no library. */

export type Point = [number, number];

export interface Scale {
  x0: number; x1: number; y0: number; y1: number;
}

/** Data bounds of the points, padded so a flat curve still has height (y from 0 when all >= 0). */
export function bounds(points: Point[]): Scale {
  if (!points.length) return { x0: 0, x1: 1, y0: 0, y1: 1 };
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of points) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (y0 >= 0) y0 = 0;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  return { x0, x1, y0, y1 };
}

/** Draw `points` as a line with axes labels into `canvas` (sized by its width/height attributes). */
export function drawLineChart(canvas: HTMLCanvasElement, points: Point[], opts: { xMax?: number; label?: string; markers?: Array<[number, string]>; dots?: boolean } = {}): void {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const w = canvas.width, h = canvas.height, padL = 44, padB = 22, padT = 10, padR = 10;
  const s = bounds(points);
  if (opts.xMax && opts.xMax > s.x1) s.x1 = opts.xMax;
  const px = (x: number) => padL + ((x - s.x0) / (s.x1 - s.x0)) * (w - padL - padR);
  const py = (y: number) => h - padB - ((y - s.y0) / (s.y1 - s.y0)) * (h - padT - padB);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#1d2026";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#2e333b";
  ctx.beginPath();
  ctx.moveTo(padL, padT); ctx.lineTo(padL, h - padB); ctx.lineTo(w - padR, h - padB);
  ctx.stroke();
  ctx.fillStyle = "#8d96a3";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(s.y1.toPrecision(3), 2, padT + 8);
  ctx.fillText(s.y0.toPrecision(3), 2, h - padB);
  ctx.fillText(String(Math.round(s.x1)), w - padR - 30, h - 6);
  ctx.fillText(opts.label ?? "", padL + 4, h - 6);
  for (const [x, text] of opts.markers ?? []) { // e.g. where a training round starts
    ctx.strokeStyle = "#d29922";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(px(x), padT); ctx.lineTo(px(x), h - padB);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#d29922";
    ctx.fillText(text, px(x) + 3, padT + 10);
  }
  if (!points.length) return;
  if (opts.dots) {
    ctx.fillStyle = "#3fb950";
    for (const [x, y] of points) ctx.fillRect(px(x) - 3, py(y) - 3, 6, 6);
  }
  ctx.strokeStyle = "#4f9dff";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
  ctx.stroke();
}
