import { describe, expect, it } from "vitest";
import { shortcutRows } from "./guide";

describe("getting-started guide", () => {
  it("shows the annotate page's own shortcut table", () => {
    const rows = shortcutRows();
    expect(rows.slice(0, 5).map((r) => r[0])).toEqual(["B", "E", "F", "P", "K"]);
    expect(rows.map((r) => r[1])).toContain("undo / redo");
    expect(rows.find((r) => r[0] === "?")?.[1]).toBe("this help");
  });
});
