import { describe, expect, it } from "vitest";
import { bounds } from "./chart";

describe("chart bounds", () => {
  it("spans the data and starts at 0 for non-negative values", () => {
    expect(bounds([[1, 0.9], [5, 0.3], [10, 0.5]])).toEqual({ x0: 1, x1: 10, y0: 0, y1: 0.9 });
  });
  it("keeps negative minima and gives a flat or single-point curve some extent", () => {
    expect(bounds([[2, -1], [4, 3]])).toEqual({ x0: 2, x1: 4, y0: -1, y1: 3 });
    expect(bounds([[3, 0]])).toEqual({ x0: 3, x1: 4, y0: 0, y1: 1 });
  });
  it("has a unit box when there is no data", () => {
    expect(bounds([])).toEqual({ x0: 0, x1: 1, y0: 0, y1: 1 });
  });
});
