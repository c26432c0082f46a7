/** Pure helpers: route matching, histogram percentiles, display URLs. */
import { describe, expect, it } from "vitest";
import { match, registerRoute } from "./router";
import { displayUrl, percentileBins, rgb } from "./viewer";

describe("router", () => {
  it("matches patterns with params and an optional trailing slash", () => {
    const render = () => undefined;
    registerRoute("/projects/:projectId/images/:imageId/annotate", render);
    registerRoute("/projects/:projectId", render);
    expect(match("/projects/7/images/42/annotate").params).toEqual({ projectId: "7", imageId: "42" });
    expect(match("/projects/7/").params).toEqual({ projectId: "7" });
    expect(match("/projects/7/other").route).toBeNull();
    expect(match("/projects/a%20b").params).toEqual({ projectId: "a b" });
  });
});

describe("viewer helpers", () => {
  it("percentile bins of a histogram", () => {
    const hist = new Array(256).fill(0);
    hist[10] = 1000; // 1000 pixels at 10, 1000 at 200, 1 outlier at 255
    hist[200] = 1000;
    hist[255] = 1;
    expect(percentileBins(hist, 0.005, 0.995)).toEqual([10, 200]);
    expect(percentileBins(hist, 0, 1)).toEqual([10, 255]);
  });

  it("display URLs carry channel, range, region and level", () => {
    const u = new URL(displayUrl(3, 1, 1000.4, 2000.6, { x: 512, y: 0, w: 512, h: 300, level: 2 }), "http://x");
    expect(u.pathname).toBe("/api/v1/images/3/display.png");
    expect(Object.fromEntries(u.searchParams)).toEqual({ channel: "1", min: "1000", max: "2001", region: "512,0,512,300", level: "2" });
  });

  it("parses colours", () => {
    expect(rgb("#ff8000")).toEqual([255, 128, 0]);
  });
});

describe("slug", () => {
  it("makes names safe for test ids", async () => {
    const { slug } = await import("./ui");
    expect(slug("weight map")).toBe("weight-map");
    expect(slug(" Uncertainty (TTA) ")).toBe("uncertainty-tta");
    expect(slug("classes")).toBe("classes");
  });
});
