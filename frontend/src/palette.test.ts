/** Default class colours never look like a channel colour (issue 11.8: channel 0 and the third class were both green). */
import { describe, expect, it } from "vitest";
import { BACKGROUND_COLOR, CHANNEL_COLORS, channelColor, CLASS_COLORS, classColor, colorDistance, RGB_COLORS } from "./palette";

const channelColours = [...new Set([...CHANNEL_COLORS, ...RGB_COLORS])];

describe("palette", () => {
  it("keeps every default class colour far from every channel colour", () => {
    for (const c of [...CLASS_COLORS, BACKGROUND_COLOR])
      for (const k of channelColours) expect(colorDistance(c, k), `${c} vs channel ${k}`).toBeGreaterThanOrEqual(120);
  });
  it("keeps the class colours apart from each other", () => {
    const all = [...CLASS_COLORS, BACKGROUND_COLOR];
    for (let i = 0; i < all.length; i++)
      for (let j = i + 1; j < all.length; j++) expect(colorDistance(all[i], all[j]), `${all[i]} vs ${all[j]}`).toBeGreaterThanOrEqual(100);
  });
  it("tints channels: grey alone, RGB for 8-bit photos, green then magenta otherwise", () => {
    expect(channelColor(0, 1, "uint16")).toBe("#ffffff");
    expect([0, 1, 2].map((c) => channelColor(c, 3, "uint8"))).toEqual(["#ff0000", "#00ff00", "#0000ff"]);
    expect([0, 1].map((c) => channelColor(c, 2, "uint16"))).toEqual(["#00ff00", "#ff00ff"]);
  });
  it("cycles class colours", () => {
    expect(classColor(0)).toBe(CLASS_COLORS[0]);
    expect(classColor(CLASS_COLORS.length + 1)).toBe(CLASS_COLORS[1]);
  });
});
