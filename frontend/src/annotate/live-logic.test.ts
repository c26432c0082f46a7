/** The Live panel's pure logic: draft change detection, rate limiting, the region in view, correction strokes. */
import { describe, expect, it } from "vitest";
import { applyStroke, emptyMasks, type Stroke } from "../raster";
import { correctionStroke, DraftTracker, overlayObject, RateGate, runsToPoints, statusLine, visibleRegion } from "./live-logic";

/** A stand-in for the annotation store: the same fields, changed the way it changes them. */
function fakeStore() {
  const s = { masks: {} as object, strokes: [] as object[], redoStack: [] as object[] };
  return {
    s,
    add: () => { s.strokes.push({}); s.redoStack = []; },
    undo: () => { s.redoStack.push(s.strokes.pop()!); s.masks = {}; },
    redo: () => { s.strokes.push(s.redoStack.pop()!); },
  };
}

describe("DraftTracker", () => {
  it("sends only after an edit, and each state once", () => {
    const f = fakeStore();
    const t = new DraftTracker(f.s, false);
    expect(t.changed).toBe(false);
    f.add();
    expect(t.changed).toBe(true);
    t.confirm(t.take());
    expect(t.changed).toBe(false);
  });

  it("sees undo, redo, and an undo followed by a different stroke", () => {
    const f = fakeStore();
    const t = new DraftTracker(f.s, false);
    f.add();
    t.confirm(t.take());
    f.undo();
    expect(t.changed).toBe(true);
    t.confirm(t.take());
    f.redo();
    expect(t.changed).toBe(true);
    t.confirm(t.take());
    f.undo();
    f.add(); // same count as before the undo, another stroke
    expect(t.changed).toBe(true);
  });

  it("an edit made while a draft was being sent is sent again", () => {
    const f = fakeStore();
    const t = new DraftTracker(f.s, false);
    f.add();
    const snap = t.take();
    f.add();
    t.confirm(snap);
    expect(t.changed).toBe(true);
  });

  it("unsaved strokes when Live goes on count as unsent", () => {
    expect(new DraftTracker(fakeStore().s, true).changed).toBe(true);
  });
});

describe("RateGate", () => {
  it("keeps requests 500 ms apart", () => {
    const g = new RateGate(500);
    expect(g.wait(1000)).toBe(0);
    g.sent(1000);
    expect(g.wait(1200)).toBe(300);
    expect(g.wait(1500)).toBe(0);
  });

  it("waits Retry-After seconds after a 429 (one second when the header is missing)", () => {
    const g = new RateGate(500);
    g.sent(0);
    g.throttled(100, "2");
    expect(g.wait(600)).toBe(1500);
    expect(g.wait(2100)).toBe(0);
    g.throttled(3000, null);
    expect(g.wait(3000)).toBe(1000);
  });
});

describe("visibleRegion", () => {
  it("clips the view to the image", () => {
    expect(visibleRegion({ x0: -10.5, y0: 20.2, x1: 300.4, y1: 90 }, 256, 128)).toEqual({ x: 0, y: 20, width: 256, height: 70 });
  });
  it("cuts a side longer than the limit around the centre of the view", () => {
    expect(visibleRegion({ x0: 0, y0: 0, x1: 3000, y1: 100 }, 4000, 100, 1024)).toEqual({ x: 988, y: 0, width: 1024, height: 100 });
  });
  it("falls back to the image's corner when the image is out of view", () => {
    expect(visibleRegion({ x0: 500, y0: 500, x1: 600, y1: 600 }, 64, 64)).toEqual({ x: 0, y: 0, width: 64, height: 64 });
  });
});

describe("statusLine", () => {
  it("reads step, loss and the overlay's age", () => {
    expect(statusLine({ state: "running", step: 120, loss: 0.3141, overlay_age_s: 2.6 })).toBe("step 120 · loss 0.31 · updated 3 s ago");
    expect(statusLine({ state: "running", step: 3, loss: null, overlay_age_s: null })).toBe("step 3 · no overlay yet");
  });
});

/** An RGBA overlay drawn from rows of letters: "." = transparent, other letters = a colour each. */
function overlay(rows: string[], x = 0, y = 0) {
  const w = rows[0].length, h = rows.length;
  const data = new Uint8ClampedArray(w * h * 4);
  rows.join("").split("").forEach((ch, i) => {
    if (ch === ".") return;
    data.set([ch.charCodeAt(0), 10, 20, 200], 4 * i);
  });
  return { data, width: w, height: h, x, y };
}

/** The stroke rasterised by the app's own rasteriser, as rows of "#". */
function painted(stroke: Stroke, w: number, h: number): string[] {
  const m = emptyMasks(w, h);
  applyStroke(m, stroke);
  return Array.from({ length: h }, (_, y) => Array.from(m.classes.slice(y * w, y * w + w), (v) => (v ? "#" : ".")).join(""));
}

describe("correction clicks", () => {
  const rows = [
    "aa..b",
    "a.a.b",
    "aaaab",
    "..a..",
    "a...a",
  ];

  it("takes the 4-connected pixels of the clicked colour", () => {
    expect(overlayObject(overlay(rows), 0, 0)).toEqual([[0, 0, 1], [1, 0, 0], [1, 2, 2], [2, 0, 3], [3, 2, 2]]);
    expect(overlayObject(overlay(rows), 4, 0)).toEqual([[0, 4, 4], [1, 4, 4], [2, 4, 4]]);
    expect(overlayObject(overlay(rows), 1, 1)).toEqual([]); // transparent: no object
    expect(overlayObject(overlay(rows), 9, 9)).toEqual([]); // outside the overlay
  });

  it("places the object in image coordinates when the overlay is a region", () => {
    expect(overlayObject(overlay(["bb"], 10, 20), 11, 20)).toEqual([[20, 10, 11]]);
  });

  it("becomes a brush stroke that paints exactly the object (holes and gaps stay unpainted)", () => {
    const runs = overlayObject(overlay(rows), 0, 0);
    const s = correctionStroke(runs, { class: 2, instance: 5 }, false)!;
    expect(s).toMatchObject({ tool: "brush", class: 2, instance: 5, radius: 0 });
    expect(painted(s, 5, 5)).toEqual([
      "##...",
      "#.#..",
      "####.",
      "..#..",
      ".....",
    ]);
  });

  it("paints exactly any set of runs, same-row runs and skipped rows included (checked against a naive fill)", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 200; trial++) {
      const w = 2 + Math.floor(rand() * 30), h = 1 + Math.floor(rand() * 12);
      const want = Array.from({ length: h }, () => Array.from({ length: w }, () => (rand() < 0.45 ? "#" : ".")).join(""));
      const runs: Array<[number, number, number]> = [];
      want.forEach((row, y) => {
        for (const m of row.matchAll(/#+/g)) runs.push([y, m.index, m.index + m[0].length - 1]);
      });
      if (!runs.length) continue;
      expect(painted({ tool: "brush", class: 2, radius: 0, points: runsToPoints(runs) }, w, h)).toEqual(want);
    }
  });

  it("Shift marks the object wrong: painted as background", () => {
    const s = correctionStroke([[0, 0, 1]], { class: 2, instance: 3 }, true)!;
    expect(s).toMatchObject({ tool: "brush", class: 1, radius: 0 });
    expect(s.instance).toBeUndefined();
  });
});
