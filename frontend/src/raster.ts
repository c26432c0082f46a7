/**
 * Pure rasteriser for brush annotations: strokes (data) -> class mask (Uint8) + instance mask (Uint16).
 *
 * The same functions paint on screen, produce the masks that are saved, and replay the stroke list for
 * undo/redo. Coordinates are integer image pixels; pixel (x, y) is painted by a brush disc centred at
 * (cx, cy) with radius r exactly when (x-cx)^2 + (y-cy)^2 <= r^2, and a brush segment paints every pixel
 * whose distance to the segment is <= r (the union of the discs stamped along it).
 * No DOM here, so it runs in node (unit tests) as well as in the browser.
 */

export type Tool = "brush" | "eraser" | "fill" | "polygon" | "instance_delete" | "instance_merge";

/** One user action, stored as data (also in the API's `strokes` list). */
export interface Stroke {
  tool: Tool;
  /** Class index painted (0 = unlabelled; the eraser always writes 0). */
  class: number;
  radius: number;
  points: Array<[number, number]>;
  /** Instance id written by brush/fill/polygon in instance mode; the target of merge/delete. */
  instance?: number;
  /** For instance_merge: the id merged into `instance`. */
  from?: number;
}

export interface Masks {
  width: number;
  height: number;
  classes: Uint8Array;
  instances: Uint16Array;
}

/** A changed rectangle [x0, y0, x1, y1) (empty when x1 <= x0). */
export type Rect = [number, number, number, number];

export function emptyMasks(width: number, height: number): Masks {
  return { width, height, classes: new Uint8Array(width * height), instances: new Uint16Array(width * height) };
}

export function cloneMasks(m: Masks): Masks {
  return { width: m.width, height: m.height, classes: m.classes.slice(), instances: m.instances.slice() };
}

/** What a painting action writes into one pixel. */
interface Ink {
  cls: number;
  /** Instance id to write, or -1 to leave the instance mask unchanged. */
  inst: number;
}

function inkOf(s: Stroke): Ink {
  if (s.tool === "eraser") return { cls: 0, inst: 0 };
  if (s.instance !== undefined && s.instance > 0) return { cls: s.class, inst: s.instance };
  // Without an instance: painting background/unlabelled removes object membership, classes keep it.
  return { cls: s.class, inst: s.class <= 1 ? 0 : -1 };
}

function put(m: Masks, i: number, ink: Ink): void {
  m.classes[i] = ink.cls;
  if (ink.inst >= 0) m.instances[i] = ink.inst;
}

/**
 * Paint every pixel within distance r of segment (ax, ay)-(bx, by) (a disc when a == b).
 * Returns the bounding rectangle that was visited (clipped to the image).
 */
export function paintSegment(m: Masks, ax: number, ay: number, bx: number, by: number, r: number, ink: Ink): Rect {
  const { width: w, height: hgt } = m;
  const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - r));
  const x1 = Math.min(w, Math.floor(Math.max(ax, bx) + r) + 1);
  const y0 = Math.max(0, Math.floor(Math.min(ay, by) - r));
  const y1 = Math.min(hgt, Math.floor(Math.max(ay, by) + r) + 1);
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  for (let y = y0; y < y1; y++) {
    const row = y * w;
    for (let x = x0; x < x1; x++) {
      let t = len2 > 0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = ax + t * dx - x;
      const ey = ay + t * dy - y;
      if (ex * ex + ey * ey <= r2 + 1e-9) put(m, row + x, ink);
    }
  }
  return [x0, y0, x1, y1];
}

/** Brush/eraser: segments between consecutive points (one disc for a single point). */
export function paintPolyline(m: Masks, points: Array<[number, number]>, r: number, ink: Ink, from = 0): Rect {
  let box: Rect = [m.width, m.height, 0, 0];
  if (points.length === 0) return [0, 0, 0, 0];
  const start = Math.max(0, from);
  if (points.length === 1) {
    const [x, y] = points[0];
    return paintSegment(m, x, y, x, y, r, ink);
  }
  for (let i = Math.max(1, start); i < points.length; i++) {
    const [ax, ay] = points[i - 1];
    const [bx, by] = points[i];
    box = union(box, paintSegment(m, ax, ay, bx, by, r, ink));
  }
  return box;
}

/** 4-connected flood fill of the region of equal (class, instance) containing (sx, sy). */
export function floodFill(m: Masks, sx: number, sy: number, ink: Ink): Rect {
  const { width: w, height: hgt, classes, instances } = m;
  if (sx < 0 || sy < 0 || sx >= w || sy >= hgt) return [0, 0, 0, 0];
  const seed = sy * w + sx;
  const c0 = classes[seed];
  const i0 = instances[seed];
  const newInst = ink.inst >= 0 ? ink.inst : i0;
  if (c0 === ink.cls && i0 === newInst) return [0, 0, 0, 0];
  const seen = new Uint8Array(w * hgt);
  const stack = [seed];
  seen[seed] = 1;
  let x0 = sx, y0 = sy, x1 = sx, y1 = sy;
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % w;
    const y = (i - x) / w;
    put(m, i, ink);
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
    const nb = [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < hgt - 1 ? i + w : -1];
    for (const j of nb) {
      if (j >= 0 && !seen[j] && classes[j] === c0 && instances[j] === i0) {
        seen[j] = 1;
        stack.push(j);
      }
    }
  }
  return [x0, y0, x1 + 1, y1 + 1];
}

/** Even-odd point-in-polygon test at (x, y). */
export function insidePolygon(poly: Array<[number, number]>, x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Fill the pixels whose (integer) coordinates lie inside the polygon (even-odd rule), scanline by scanline. */
export function fillPolygon(m: Masks, poly: Array<[number, number]>, ink: Ink): Rect {
  if (poly.length < 3) return [0, 0, 0, 0];
  const ys = poly.map((p) => p[1]);
  const y0 = Math.max(0, Math.ceil(Math.min(...ys)));
  const y1 = Math.min(m.height - 1, Math.floor(Math.max(...ys)));
  let bx0 = m.width, bx1 = 0;
  for (let y = y0; y <= y1; y++) {
    const xs: number[] = [];
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i];
      const [xj, yj] = poly[j];
      if (yi > y !== yj > y) xs.push(((xj - xi) * (y - yi)) / (yj - yi) + xi);
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // pixels x with xs[k] <= x < xs[k+1] match insidePolygon's strict test x < crossing
      const xa = Math.max(0, Math.ceil(xs[k]));
      const xb = Math.min(m.width - 1, Math.ceil(xs[k + 1]) - 1);
      for (let x = xa; x <= xb; x++) put(m, y * m.width + x, ink);
      if (xa <= xb) {
        bx0 = Math.min(bx0, xa);
        bx1 = Math.max(bx1, xb + 1);
      }
    }
  }
  return bx1 > bx0 ? [bx0, y0, bx1, y1 + 1] : [0, 0, 0, 0];
}

/** Delete an instance (class and id back to 0) or merge `from` into `instance` (the class of `instance` wins). */
function instanceOp(m: Masks, s: Stroke): Rect {
  const target = s.instance ?? 0;
  if (target <= 0) return [0, 0, 0, 0];
  let cls = 0;
  if (s.tool === "instance_merge") {
    for (let i = 0; i < m.instances.length; i++) if (m.instances[i] === target) { cls = m.classes[i]; break; }
  }
  const src = s.tool === "instance_merge" ? s.from ?? 0 : target;
  if (src <= 0 || src === target && s.tool === "instance_merge") return [0, 0, 0, 0];
  let box: Rect = [m.width, m.height, 0, 0];
  for (let i = 0; i < m.instances.length; i++) {
    if (m.instances[i] !== src) continue;
    if (s.tool === "instance_merge") {
      m.instances[i] = target;
      if (cls) m.classes[i] = cls;
    } else {
      m.instances[i] = 0;
      m.classes[i] = 0;
    }
    const x = i % m.width;
    const y = (i - x) / m.width;
    box = union(box, [x, y, x + 1, y + 1]);
  }
  return box;
}

/** Apply one stroke to the masks (in place); returns the rectangle that may have changed. */
export function applyStroke(m: Masks, s: Stroke): Rect {
  switch (s.tool) {
    case "brush":
    case "eraser":
      return paintPolyline(m, s.points, s.radius, inkOf(s));
    case "fill":
      return s.points.length ? floodFill(m, s.points[0][0], s.points[0][1], inkOf(s)) : [0, 0, 0, 0];
    case "polygon":
      return fillPolygon(m, s.points, inkOf(s));
    case "instance_delete":
    case "instance_merge":
      return instanceOp(m, s);
    default:
      return [0, 0, 0, 0];
  }
}

/** Paint only the newest segment of a brush/eraser stroke that is being drawn (points[from-1] .. points[end]). */
export function applyStrokeTail(m: Masks, s: Stroke, from: number): Rect {
  return paintPolyline(m, s.points, s.radius, inkOf(s), from);
}

/** Replay a stroke list on top of `base` (not modified) and return new masks. */
export function replay(base: Masks, strokes: Stroke[]): Masks {
  const m = cloneMasks(base);
  for (const s of strokes) applyStroke(m, s);
  return m;
}

/** The largest instance id in use (a new object gets this + 1). */
export function maxInstance(m: Masks): number {
  let mx = 0;
  for (let i = 0; i < m.instances.length; i++) if (m.instances[i] > mx) mx = m.instances[i];
  return mx;
}

export function union(a: Rect, b: Rect): Rect {
  if (b[2] <= b[0] || b[3] <= b[1]) return a;
  if (a[2] <= a[0] || a[3] <= a[1]) return b;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}
