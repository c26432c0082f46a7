/** Rasteriser and PNG codec against hand-computed pixel sets and naive references. */
import { describe, expect, it } from "vitest";
import { inflateSync } from "node:zlib";
import { applyStroke, emptyMasks, fillPolygon, insidePolygon, maxInstance, replay, type Masks, type Stroke } from "./raster";
import { decodePng, encodeGreyPng } from "./png";

/** Set of "x,y" of the pixels with a non-zero class. */
function painted(m: Masks, value?: number): Set<string> {
  const out = new Set<string>();
  for (let y = 0; y < m.height; y++)
    for (let x = 0; x < m.width; x++) {
      const v = m.classes[y * m.width + x];
      if (value === undefined ? v !== 0 : v === value) out.add(`${x},${y}`);
    }
  return out;
}

/**
 * Reference: pixels within distance r of the segment (a, b), brute force over all pixels, with the
 * distance written differently from raster.ts: the perpendicular distance |cross|/|ab| where the foot
 * falls on the segment (dot-product tests), else the nearer endpoint.
 */
function capsule(w: number, h: number, a: [number, number], b: [number, number], r: number): Set<string> {
  const out = new Set<string>();
  const [ux, uy] = [b[0] - a[0], b[1] - a[1]];
  const len2 = ux * ux + uy * uy;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const [px, py] = [x - a[0], y - a[1]];
      const da = px * px + py * py;
      const db = (x - b[0]) ** 2 + (y - b[1]) ** 2;
      let best = Math.min(da, db);
      const onSegment = len2 > 0 && px * ux + py * uy >= 0 && (x - b[0]) * -ux + (y - b[1]) * -uy >= 0;
      if (onSegment) best = Math.min(best, (px * uy - py * ux) ** 2 / len2);
      if (best <= r * r + 1e-9) out.add(`${x},${y}`);
    }
  return out;
}

describe("brush", () => {
  it("a single point paints exactly the disc dx²+dy² <= r²", () => {
    for (const r of [0, 1, 2, 3, 5, 7]) {
      const m = emptyMasks(32, 32);
      applyStroke(m, { tool: "brush", class: 2, radius: r, points: [[15, 14]] });
      const expected = new Set<string>();
      for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) if (dx * dx + dy * dy <= r * r) expected.add(`${15 + dx},${14 + dy}`);
      expect(painted(m)).toEqual(expected);
    }
  });

  it("a radius-1 disc is the 5-pixel plus and radius 2 has 13 pixels", () => {
    const m = emptyMasks(9, 9);
    applyStroke(m, { tool: "brush", class: 3, radius: 1, points: [[4, 4]] });
    expect(painted(m)).toEqual(new Set(["4,3", "3,4", "4,4", "5,4", "4,5"]));
    const m2 = emptyMasks(9, 9);
    applyStroke(m2, { tool: "brush", class: 3, radius: 2, points: [[4, 4]] });
    expect(painted(m2).size).toBe(13);
  });

  it("a segment paints the capsule (union of discs along it)", () => {
    const m = emptyMasks(40, 30);
    applyStroke(m, { tool: "brush", class: 2, radius: 3, points: [[5, 5], [30, 20]] });
    expect(painted(m)).toEqual(capsule(40, 30, [5, 5], [30, 20], 3));
  });

  it("clips at the image border", () => {
    const m = emptyMasks(10, 10);
    applyStroke(m, { tool: "brush", class: 2, radius: 4, points: [[0, 0], [-5, 12]] });
    const ref = capsule(10, 10, [0, 0], [-5, 12], 4);
    expect(painted(m)).toEqual(ref);
  });

  it("eraser writes 0 to classes and instances", () => {
    const m = emptyMasks(20, 20);
    applyStroke(m, { tool: "brush", class: 2, radius: 5, points: [[10, 10]], instance: 7 });
    applyStroke(m, { tool: "eraser", class: 0, radius: 2, points: [[10, 10]] });
    expect(m.classes[10 * 20 + 10]).toBe(0);
    expect(m.instances[10 * 20 + 10]).toBe(0);
    expect(m.classes[10 * 20 + 14]).toBe(2);
    expect(m.instances[10 * 20 + 14]).toBe(7);
    expect(painted(m).size).toBe(capsule(20, 20, [10, 10], [10, 10], 5).size - capsule(20, 20, [10, 10], [10, 10], 2).size);
  });
});

describe("flood fill", () => {
  it("fills the 4-connected region of the seed only", () => {
    const m = emptyMasks(12, 12);
    // a closed ring of class 2 (4-connected walls), fill inside with class 3
    for (let i = 2; i <= 9; i++) {
      for (const [x, y] of [[i, 2], [i, 9], [2, i], [9, i]]) m.classes[y * 12 + x] = 2;
    }
    applyStroke(m, { tool: "fill", class: 3, radius: 0, points: [[5, 5]] });
    expect(painted(m, 3).size).toBe(36); // interior 3..8 x 3..8
    expect(m.classes[0]).toBe(0);
    applyStroke(m, { tool: "fill", class: 1, radius: 0, points: [[0, 0]] });
    expect(painted(m, 1).size).toBe(144 - 64); // everything outside the 8x8 ring block
  });

  it("filling with the same class changes nothing", () => {
    const m = emptyMasks(5, 5);
    applyStroke(m, { tool: "fill", class: 0, radius: 0, points: [[2, 2]] });
    expect(painted(m).size).toBe(0);
  });
});

describe("polygon", () => {
  it("fills exactly the integer points that the even-odd test puts inside", () => {
    const poly: Array<[number, number]> = [[3, 2], [25, 6], [18, 22], [10, 14], [4, 20]];
    const m = emptyMasks(30, 30);
    fillPolygon(m, poly, { cls: 2, inst: -1 });
    const ref = new Set<string>();
    for (let y = 0; y < 30; y++) for (let x = 0; x < 30; x++) if (insidePolygon(poly, x, y)) ref.add(`${x},${y}`);
    expect(painted(m)).toEqual(ref);
  });

  it("an axis-aligned rectangle [2,8)x[3,7) covers 6x4 pixels", () => {
    const m = emptyMasks(12, 12);
    applyStroke(m, { tool: "polygon", class: 2, radius: 0, points: [[2, 3], [8, 3], [8, 7], [2, 7]] });
    expect(painted(m).size).toBe(24);
    expect(m.classes[3 * 12 + 2]).toBe(2);
    expect(m.classes[3 * 12 + 8]).toBe(0);
  });
});

describe("instances and replay", () => {
  it("merge and delete instances", () => {
    const m = emptyMasks(20, 10);
    applyStroke(m, { tool: "brush", class: 2, radius: 2, points: [[4, 4]], instance: 1 });
    applyStroke(m, { tool: "brush", class: 3, radius: 2, points: [[14, 4]], instance: 2 });
    expect(maxInstance(m)).toBe(2);
    applyStroke(m, { tool: "instance_merge", class: 0, radius: 0, points: [], instance: 1, from: 2 });
    expect(m.instances[4 * 20 + 14]).toBe(1);
    expect(m.classes[4 * 20 + 14]).toBe(2);
    applyStroke(m, { tool: "instance_delete", class: 0, radius: 0, points: [], instance: 1 });
    expect(painted(m).size).toBe(0);
    expect(maxInstance(m)).toBe(0);
  });

  it("replay of a prefix equals undo", () => {
    const base = emptyMasks(30, 30);
    const strokes: Stroke[] = [
      { tool: "brush", class: 2, radius: 3, points: [[5, 5], [20, 5]] },
      { tool: "brush", class: 3, radius: 2, points: [[10, 2], [10, 25]] },
      { tool: "eraser", class: 0, radius: 1, points: [[10, 5]] },
    ];
    const all = replay(base, strokes);
    const two = replay(base, strokes.slice(0, 2));
    expect(painted(all)).not.toEqual(painted(two));
    const step = replay(two, strokes.slice(2));
    expect(Array.from(step.classes)).toEqual(Array.from(all.classes));
    expect(painted(base).size).toBe(0); // base untouched
  });
});

describe("png", () => {
  it("8-bit grey round trip, and zlib/PNG layout readable by node's inflate", async () => {
    const w = 37, h = 11;
    const px = new Uint8Array(w * h).map((_, i) => (i * 7) % 256);
    const png = await encodeGreyPng(px, w, h);
    const back = await decodePng(png);
    expect(back.width).toBe(w);
    expect(back.bitDepth).toBe(8);
    expect(Array.from(back.data)).toEqual(Array.from(px));
    // independent check of the IDAT stream with node's zlib
    const len = new DataView(png.buffer).getUint32(33);
    const raw = inflateSync(png.subarray(41, 41 + len));
    expect(raw.length).toBe((w + 1) * h);
    expect(raw[1 + w + 1 + 3]).toBe(px[w + 3]);
  });

  it("16-bit grey round trip keeps values above 255", async () => {
    const w = 5, h = 4;
    const px = new Uint16Array([0, 1, 255, 256, 65535, 1000, 40000, 3, 2, 9, 300, 301, 302, 303, 304, 7, 8, 9, 10, 11]);
    const back = await decodePng(await encodeGreyPng(px, w, h));
    expect(back.bitDepth).toBe(16);
    expect(Array.from(back.data)).toEqual(Array.from(px));
  });
});
