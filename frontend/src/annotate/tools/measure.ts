/**
 * Measure: drag across an object to read its width in image pixels. The project's object size (project page,
 * "Object size") is such a width: the narrowest span of a typical object, a round nucleus's diameter. Paints
 * nothing; the line stays on screen until the next one, and the median of the last few widths is shown too.
 */
import type { ToolFactory } from "./types";

/** How many of the latest widths the median is taken over. */
export const MEASURE_KEEP = 5;

/** The distance in image pixels between two pixels (centre to centre). */
export function lengthOf(a: [number, number], b: [number, number]): number {
  return Math.hypot(b[0] - a[0], b[1] - a[1]);
}

export function median(values: number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** What the page says after a measurement: the width, and once there are 3 or more, their median. */
export function measureText(width: number, recent: number[]): string {
  if (recent.length < 3) return `${width.toFixed(1)} px across. Measure a few objects: their median is the object diameter to set on the project page.`;
  return `${width.toFixed(1)} px across; the median of the last ${recent.length} is ${median(recent).toFixed(1)} px (the project page's object diameter).`;
}

export const measureTool: ToolFactory = (ctx) => {
  let line: [[number, number], [number, number]] | null = null;
  let dragging = false;
  const recent: number[] = [];
  return {
    id: "measure",
    label: "Measure",
    key: "M",
    help: "measure an object's width (drag across it)",
    cursor: "crosshair",
    usesClass: false,
    deactivate: () => {
      line = null;
      dragging = false;
    },
    onPointerDown(e) {
      line = [e.point, e.point];
      dragging = true;
      e.capture();
      ctx.requestRender();
    },
    onPointerMove(e) {
      if (!dragging || !line || !(e.buttons & 1)) return;
      line = [line[0], e.point];
      ctx.requestRender();
    },
    onPointerUp(e) {
      if (!dragging || !line) return;
      dragging = false;
      line = [line[0], e.point];
      const width = lengthOf(line[0], line[1]);
      if (e.type === "pointerup" && width >= 1) {
        recent.push(width);
        if (recent.length > MEASURE_KEEP) recent.shift();
        ctx.notify(measureText(width, recent));
        if (recent.length >= 3) ctx.offerDiameter?.(Math.round(10 * median(recent)) / 10);
      }
      ctx.requestRender();
    },
    cancel: () => {
      line = null;
      dragging = false;
      ctx.requestRender();
    },
    draw(d) {
      if (!line) return;
      const [a, b] = line.map(([x, y]) => d.toScreen(x + 0.5, y + 0.5));
      d.ctx.beginPath();
      d.ctx.moveTo(a[0], a[1]);
      d.ctx.lineTo(b[0], b[1]);
      d.ctx.strokeStyle = "#00ffff";
      d.ctx.lineWidth = 2;
      d.ctx.stroke();
      d.ctx.fillStyle = "#00ffff";
      d.ctx.font = "12px sans-serif";
      d.ctx.fillText(`${lengthOf(line[0], line[1]).toFixed(1)} px`, b[0] + 6, b[1] - 6);
    },
  };
};
