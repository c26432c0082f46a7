/** The save status in the page head: "✓ saved (v3)", "● unsaved changes", "⚠ not saved: …". */
import type { SaveState } from "../annotation";
import { h } from "../ui";

const LABEL: Record<SaveState, string> = {
  saved: "✓ saved",
  unsaved: "● unsaved changes",
  saving: "saving…",
  error: "⚠ not saved",
  conflict: "⚠ conflict: not saved",
  loading: "loading…",
};

/** The text for a state (with the server's reason for an error, and the version once saved). */
export function saveStatusText(s: SaveState, version: number, lastError: string): string {
  return LABEL[s] + (s === "error" && lastError ? `: ${lastError} (kept as a local draft)` : "") + (s === "saved" ? ` (v${version})` : "");
}

export class SaveStatus {
  readonly el = h("span", { class: "save-status", "data-testid": "save-status", role: "status" }, LABEL.loading);

  show(s: SaveState, version: number, lastError: string): void {
    this.el.textContent = saveStatusText(s, version, lastError);
    this.el.className = `save-status ${s}`;
    this.el.dataset.state = s;
  }

  /** The annotation could not be read at all (the state stays as it was). */
  loadFailed(): void {
    this.el.textContent = "⚠ annotation not loaded";
  }
}
