/**
 * The pure parts of the Live panel (issue 13), kept free of the DOM so vitest checks them in node:
 * when the draft changed since the last send, how fast PUTs may go (500 ms apart, Retry-After on 429),
 * which image region is in view, the status line, and the correction click (an overlay object -> a stroke).
 */
import type { Stroke } from "../raster";

// --- draft change detection ----------------------------------------------------------------------
/** What the annotation store holds, by identity: any edit, undo, redo or reload changes one of these. */
export interface DraftSource {
  masks: object;
  strokes: readonly object[];
  redoStack: readonly object[];
}

interface Snapshot {
  masks: object;
  count: number;
  last: object | undefined;
  redo: number;
}

function snapshot(s: DraftSource): Snapshot {
  return { masks: s.masks, count: s.strokes.length, last: s.strokes[s.strokes.length - 1], redo: s.redoStack.length };
}

function same(a: Snapshot, b: Snapshot): boolean {
  return a.masks === b.masks && a.count === b.count && a.last === b.last && a.redo === b.redo;
}

/**
 * Whether the page's masks changed since the last draft that reached the server. Cheap (no pixel
 * comparison): a new stroke pushes (count, last), undo pops and replays (new masks object), redo pushes,
 * undo + a different stroke keeps the count but changes the last stroke, a reload replaces the masks.
 */
export class DraftTracker {
  private sent: Snapshot | null;

  /** `sendFirst`: the current masks count as unsent (the page has unsaved strokes when Live goes on). */
  constructor(private readonly source: DraftSource, sendFirst: boolean) {
    this.sent = sendFirst ? null : snapshot(source);
  }

  get changed(): boolean {
    return this.sent === null || !same(this.sent, snapshot(this.source));
  }

  /** Take the state about to be sent; call {@link confirm} with it once the server accepted it. */
  take(): Snapshot {
    return snapshot(this.source);
  }

  confirm(s: Snapshot): void {
    this.sent = s;
  }
}

// --- rate limiting -------------------------------------------------------------------------------
/** PUTs at least `minGapMs` apart, and none before a 429's Retry-After has passed. */
export class RateGate {
  private last = -Infinity;
  private blockedUntil = -Infinity;

  constructor(readonly minGapMs = 500) {}

  /** Milliseconds to wait before the next request may go (0: now). */
  wait(now: number): number {
    return Math.max(0, this.last + this.minGapMs - now, this.blockedUntil - now);
  }

  sent(now: number): void {
    this.last = now;
  }

  /** A 429: `retryAfter` is the header's value (seconds; absent or unreadable: one second). */
  throttled(now: number, retryAfter: string | null): void {
    const s = Number(retryAfter);
    this.blockedUntil = now + (retryAfter !== null && isFinite(s) && s >= 0 ? s : 1) * 1000;
  }
}

// --- the region in view ----------------------------------------------------------------------------
export interface LiveRegion {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The image pixels in view, clipped to the image; a side longer than `max` (LABSEG_LIVE_MAX_REGION) is cut
 * to `max` around the centre of the view. `view` is the visible rectangle in image coordinates.
 */
export function visibleRegion(view: { x0: number; y0: number; x1: number; y1: number }, width: number, height: number, max = 1024): LiveRegion {
  const side = (a: number, b: number, size: number): [number, number] => {
    let lo = Math.max(0, Math.floor(a));
    let hi = Math.min(size, Math.ceil(b));
    if (hi <= lo) [lo, hi] = [0, Math.min(size, max)]; // the image is out of view: its corner
    if (hi - lo > max) {
      const mid = Math.round((lo + hi) / 2);
      lo = Math.max(0, Math.min(size - max, mid - Math.floor(max / 2)));
      hi = lo + max;
    }
    return [lo, hi - lo];
  };
  const [x, w] = side(view.x0, view.x1, width);
  const [y, h] = side(view.y0, view.y1, height);
  return { x, y, width: w, height: h };
}

export function sameRegion(a: LiveRegion | null | undefined, b: LiveRegion | null | undefined): boolean {
  return !!a && !!b && a.x === b.x && a.y === b.y && a.width === b.width && a.height === b.height;
}

// --- the status line -----------------------------------------------------------------------------
export interface LiveStatus {
  id: number;
  /** queued / running / cancelled (ended) / failed */
  state: string;
  stop_reason: string;
  error: string;
  step: number;
  loss: number | null;
  overlay_step: number;
  overlay_age_s: number | null;
  overlay_url: string | null;
  overlay_region: Partial<LiveRegion>;
  region: LiveRegion;
}

export function isActive(s: Pick<LiveStatus, "state">): boolean {
  return s.state === "queued" || s.state === "running";
}

/** "step 120 · loss 0.31 · updated 3 s ago" (or what the session waits for). */
export function statusLine(s: Pick<LiveStatus, "state" | "step" | "loss" | "overlay_age_s">, ageS = s.overlay_age_s): string {
  if (s.state === "queued") return "waiting for a worker…";
  const parts = [`step ${s.step}`];
  if (s.loss !== null && s.loss !== undefined) parts.push(`loss ${s.loss.toFixed(2)}`);
  parts.push(ageS === null || ageS === undefined ? "no overlay yet" : `updated ${Math.max(0, Math.round(ageS))} s ago`);
  return parts.join(" · ");
}

/** "stopped", "the page went quiet", … for a stop reason code (the server's label when unknown). */
export function stopMessage(reason: string, error = ""): string {
  if (error) return `Live stopped: ${error}`;
  return `Live stopped${reason ? ` (${reason.replace(/_/g, " ")})` : ""}`;
}

// --- correction clicks ---------------------------------------------------------------------------
/** An RGBA overlay of `region` (the worker's PNG): a pixel with alpha 0 shows no object. */
export interface OverlayPixels {
  data: Uint8ClampedArray | Uint8Array;
  width: number;
  height: number;
  /** Where the overlay lies in the image. */
  x: number;
  y: number;
}

/**
 * The 4-connected pixels of the overlay around image point (px, py) with the same colour (alpha > 0), in
 * image coordinates as rows of runs [y, x0, x1] (inclusive), sorted by row then x. Empty when the point
 * is outside the overlay or on its background.
 */
export function overlayObject(o: OverlayPixels, px: number, py: number): Array<[number, number, number]> {
  const sx = px - o.x, sy = py - o.y;
  const { width: w, height: h, data } = o;
  if (sx < 0 || sy < 0 || sx >= w || sy >= h) return [];
  const rgb = (i: number) => (data[4 * i] << 16) | (data[4 * i + 1] << 8) | data[4 * i + 2];
  const seed = sy * w + sx;
  if (data[4 * seed + 3] === 0) return [];
  const colour = rgb(seed);
  const inside = (i: number) => data[4 * i + 3] > 0 && rgb(i) === colour;
  const seen = new Uint8Array(w * h);
  const stack = [seed];
  seen[seed] = 1;
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % w;
    for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, i - w, i + w]) {
      if (j >= 0 && j < w * h && !seen[j] && inside(j)) {
        seen[j] = 1;
        stack.push(j);
      }
    }
  }
  const runs: Array<[number, number, number]> = [];
  for (let y = 0; y < h; y++) {
    let start = -1;
    for (let x = 0; x <= w; x++) {
      const on = x < w && seen[y * w + x] === 1;
      if (on && start < 0) start = x;
      if (!on && start >= 0) {
        runs.push([y + o.y, start + o.x, x - 1 + o.x]);
        start = -1;
      }
    }
  }
  return runs;
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * A point above the image (never painted: rows < 0 are clipped) joining `a` to `b` so that neither leg of
 * the radius-0 polyline passes through a lattice point: the legs' coordinate differences are coprime.
 */
function detour(a: [number, number], b: [number, number]): [number, number] {
  for (let s = 1; s < 64; s++)
    for (let d = 1; d < 64; d++) if (gcd(s, a[1] + d) === 1 && gcd(b[0] - a[0] - s, b[1] + d) === 1) return [a[0] + s, -d];
  throw new Error("no detour found"); // cannot happen: consecutive d give consecutive integers
}

/**
 * An ordinary brush stroke's points (radius 0) that paint exactly the given runs, so a correction is data
 * like any other stroke (undo, redo, replay, autosave). A radius-0 segment between integer points paints
 * the lattice points on it: a run is one horizontal segment, and a hop to the next row paints only its two
 * ends. Runs of the same row (or rows further apart) are joined through a {@link detour} above the image.
 */
export function runsToPoints(runs: Array<[number, number, number]>): Array<[number, number]> {
  const pts: Array<[number, number]> = [];
  for (const [y, x0, x1] of runs) {
    const prev = pts[pts.length - 1];
    if (prev && prev[1] !== y - 1) pts.push(detour(prev, [x0, y]));
    pts.push([x0, y]);
    if (x1 !== x0) pts.push([x1, y]);
  }
  return pts;
}

/** The correction stroke for a click: accept (the object as `ink`) or mark wrong (background, class 1). */
export function correctionStroke(runs: Array<[number, number, number]>, ink: { class: number; instance?: number }, wrong: boolean): Stroke | null {
  if (!runs.length) return null;
  const points = runsToPoints(runs);
  return wrong ? { tool: "brush", class: 1, radius: 0, points } : { tool: "brush", radius: 0, points, ...ink };
}
