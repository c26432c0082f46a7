/** Instance outlines in screen space (issue 11.9: borders showed only at 400 % zoom) and the picked object. */
import { describe, expect, it } from "vitest";
import { drawInstanceEdges, EDGE_RGBA, PICKED_EDGE_RGBA } from "./viewer";

/** ids drawn from rows of digits ("0" = no object). */
function grid(rows: string[]): { ids: Uint32Array; w: number; h: number } {
  const w = rows[0].length, h = rows.length;
  return { ids: Uint32Array.from(rows.join("").split("").map(Number)), w, h };
}
const FILL = 0x80112233;
function edges(rows: string[], picked = 0): string[] {
  const { ids, w, h } = grid(rows);
  const out = new Uint32Array(w * h).map((_, i) => (ids[i] ? FILL : 0));
  drawInstanceEdges(out, ids, w, h, picked, 0xee);
  const sym = (v: number) => (v === EDGE_RGBA ? "#" : v === PICKED_EDGE_RGBA ? "P" : v === FILL ? "." : v === 0 ? " " : v >>> 24 === 0xee ? "o" : "?");
  return Array.from({ length: h }, (_, y) => Array.from(out.slice(y * w, y * w + w), sym).join(""));
}

describe("drawInstanceEdges", () => {
  it("outlines objects against the background and each other, one screen pixel wide", () => {
    expect(edges([
      "0000000",
      "0111220",
      "0111220",
      "0111220",
      "0000000",
    ])).toEqual([
      "       ",
      " ##### ",
      " #.### ",
      " ##### ",
      "       ",
    ]);
  });

  it("outlines an object smaller than a screen pixel's neighbourhood (far zoomed out) entirely", () => {
    expect(edges(["000", "010", "000"])).toEqual(["   ", " # ", "   "]);
  });

  it("draws the picked object opaque with a thick yellow outline", () => {
    expect(edges([
      "000000",
      "011100",
      "011100",
      "011100",
      "000000",
    ], 1)).toEqual([
      " PPP  ",
      "PPPPP ",
      "PPoPP ",
      "PPPPP ",
      " PPP  ",
    ]);
  });
});
