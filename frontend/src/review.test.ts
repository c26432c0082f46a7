import { describe, expect, it } from "vitest";
import { describeReview, outlineRect, viewFor } from "./review";

describe("objects to check", () => {
  it("says what the review holds", () => {
    expect(describeReview(undefined)).toMatch(/predict again/);
    expect(describeReview({ skipped: "objects are split by painted membranes" })).toBe("No objects to check: objects are split by painted membranes.");
    expect(describeReview({ total: 0, objects: [] })).toMatch(/No object/);
    const one = { id: 3, bbox: [1, 2, 3, 4] as [number, number, number, number], area: 9, solidity: 0.8, area_ratio: 2, reason: "r" };
    expect(describeReview({ total: 1, objects: [one] })).toMatch(/^1 object of this prediction looks like/);
    expect(describeReview({ total: 60, objects: Array(50).fill(one) })).toMatch(/^60 objects .* look like several merged \(the 50 largest shown\)/);
  });

  it("centres the box with a margin of its own size, zoom capped", () => {
    // box 100..140 x 200..220 in a 600 x 300 view: span 120 x 60 -> scale min(8, 5, 5) = 5
    const v = viewFor([100, 200, 40, 20], 600, 300);
    expect(v.scale).toBe(5);
    // the box centre (120, 210) lands on the view centre (300, 150)
    expect(120 * v.scale + v.offsetX).toBeCloseTo(300);
    expect(210 * v.scale + v.offsetY).toBeCloseTo(150);
    expect(viewFor([0, 0, 2, 2], 600, 300).scale).toBe(8);
  });

  it("draws the box around the object with a margin, on a canvas 512 px on its longer side", () => {
    const small = outlineRect([10, 20, 30, 40]);
    expect(small.rect).toEqual({ x: 6, y: 16, w: 38, h: 48 });
    expect([small.canvasW, small.canvasH]).toEqual([Math.round(38 * 512 / 48), 512]);
    const big = outlineRect([0, 0, 5000, 2500]);
    expect(big.rect).toEqual({ x: -500, y: -500, w: 6000, h: 3500 });
    expect(big.canvasW).toBe(512);
    expect(big.canvasH).toBe(Math.round(3500 * 512 / 6000));
  });
});
