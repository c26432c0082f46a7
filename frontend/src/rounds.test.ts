import { describe, expect, it } from "vitest";
import { progressText, roundMarkers, validationSeries, type RunRound } from "./rounds";

const rounds: RunRound[] = [
  { round: 1, of: 2, start_step: 0, end_step: 150, validation: { split: "validation", images: 2, scores: { iou_fg: 0.5, pixel_error: 0.2 } } },
  { round: 2, of: 2, start_step: 150, end_step: null, validation: null },
];

describe("training rounds", () => {
  it("says which round and which step of all rounds", () => {
    expect(progressText({ step: 170, total_steps: 300, rounds, config: { steps: 150 } })).toBe("round 2 of 2 · step 170 of 300 (150 steps a round)");
    expect(progressText({ step: 40, total_steps: 100, rounds: [{ ...rounds[0], of: 1 }] })).toBe("step 40 of 100");
    expect(progressText({ step: 0, total_steps: 0 })).toBe("step 0 of ?");
  });

  it("marks where each later round starts", () => {
    expect(roundMarkers(rounds)).toEqual([[150, "round 2"]]);
    expect(roundMarkers(undefined)).toEqual([]);
  });

  it("plots the first metric scored after the rounds", () => {
    expect(validationSeries(rounds)).toEqual(["iou_fg", "foreground IoU", [[150, 0.5]]]);
    const done = [rounds[0], { ...rounds[1], end_step: 300, validation: { split: "validation", images: 2, scores: { iou_fg: 0.7 } } }];
    expect(validationSeries(done)?.[2]).toEqual([[150, 0.5], [300, 0.7]]);
    expect(validationSeries([])).toBeNull();
  });
});
