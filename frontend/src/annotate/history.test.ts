/** The History panel's rows and times, without a browser. */
import { describe, expect, it } from "vitest";
import { ago, versionRows, type VersionRow } from "./history";

const row = (version: number): VersionRow => ({ version, labelled_pixels: version * 10, updated_by: "anna", updated_at: null });

describe("history rows", () => {
  it("list the current version first, then the earlier ones newest first, each once", () => {
    expect(versionRows(row(4), [row(1), row(3), row(2), row(4)]).map((r) => r.version)).toEqual([4, 3, 2, 1]);
  });
  it("are empty for a never-saved annotation", () => {
    expect(versionRows(row(0), [])).toEqual([]);
  });
  it("say how long ago", () => {
    const now = Date.parse("2025-01-01T12:00:00Z");
    expect(ago("2025-01-01T11:59:50Z", now)).toBe("just now");
    expect(ago("2025-01-01T11:55:00Z", now)).toBe("5 min ago");
    expect(ago("2025-01-01T09:00:00Z", now)).toBe("3 h ago");
    expect(ago(null, now)).toBe("");
  });
});
