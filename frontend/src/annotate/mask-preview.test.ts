/** The conflict dialog's comparison (differences bright, the rest dimmed) and its choices, without a browser. */
import { describe, expect, it } from "vitest";
import { CONFLICT_BUTTONS, unsavedText } from "./conflict";
import { previewSize, REMOVED, renderMaskPreview, SAME_DIM, UNLABELLED, type Rgb } from "./mask-preview";

const RED: Rgb = [255, 0, 0];
const colors = new Map<number, Rgb>([[2, RED]]);
const px = (rgba: Uint8ClampedArray, cw: number, x: number, y: number) => [...rgba.slice((y * cw + x) * 4, (y * cw + x) * 4 + 3)];

describe("renderMaskPreview", () => {
  it("draws differing pixels bright and the same ones dimmed", () => {
    const theirs = new Uint8Array([2, 2, 0, 0]); // 4 x 1
    const mine = new Uint8Array([2, 0, 2, 0]);
    const p = renderMaskPreview(theirs, 4, 1, 4, 1, colors, mine);
    expect(p.differing).toBe(2);
    expect(px(p.rgba, 4, 0, 0)).toEqual(RED.map((v) => Math.floor(v * SAME_DIM))); // same in both: dimmed
    expect(px(p.rgba, 4, 1, 0)).toEqual([...RED]); // labelled only in theirs: bright
    expect(px(p.rgba, 4, 2, 0)).toEqual([...REMOVED]); // unlabelled here, labelled in mine: white
    expect(px(p.rgba, 4, 3, 0)).toEqual(UNLABELLED.map((v) => Math.floor(v * SAME_DIM)));
  });

  it("keeps a one-pixel difference visible when the preview is shrunk", () => {
    const w = 100, hgt = 100;
    const a = new Uint8Array(w * hgt);
    const b = a.slice();
    b[57 * w + 33] = 2; // one pixel, not on the sampling grid of a 10x10 preview
    const p = renderMaskPreview(b, w, hgt, 10, 10, colors, a);
    expect(p.differing).toBe(1);
    const bright = [];
    for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) if (px(p.rgba, 10, x, y)[0] > 100) bright.push([x, y]);
    expect(bright).toEqual([[3, 5]]);
  });

  it("enlarges small masks and marks every preview pixel of a differing mask pixel", () => {
    expect(previewSize(160, 120, 640)).toEqual([640, 480]);
    expect(previewSize(4000, 1000, 640)).toEqual([640, 160]);
    const p = renderMaskPreview(new Uint8Array([0, 2]), 2, 1, 4, 2, colors, new Uint8Array([0, 0]));
    expect([0, 1, 2, 3].map((x) => px(p.rgba, 4, x, 1)[0])).toEqual([6, 6, 255, 255]);
  });

  it("without another version draws plain colours", () => {
    const p = renderMaskPreview(new Uint8Array([0, 2]), 2, 1, 2, 1, colors);
    expect(p.differing).toBe(0);
    expect(px(p.rgba, 2, 0, 0)).toEqual([...UNLABELLED]);
    expect(px(p.rgba, 2, 1, 0)).toEqual([...RED]);
  });
});

describe("conflict choices", () => {
  it("make adding my strokes to theirs the default and label the destructive ones", () => {
    const primary = CONFLICT_BUTTONS.filter((b) => b.primary);
    expect(primary.map((b) => b.value)).toEqual(["merge"]);
    expect(CONFLICT_BUTTONS.find((b) => b.value === "mine")!.label).toMatch(/drops their changes/);
    expect(CONFLICT_BUTTONS.find((b) => b.value === "theirs")!.label).toMatch(/drops my/);
  });

  it("count strokes in words", () => {
    expect(unsavedText(1)).toBe("1 unsaved stroke");
    expect(unsavedText(4)).toBe("4 unsaved strokes");
  });
});
