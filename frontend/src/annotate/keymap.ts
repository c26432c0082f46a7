/**
 * Keyboard shortcuts as one table: each binding names its keys, says what it does (the help dialog is
 * drawn from the same table) and runs. Keys are matched case-insensitively; Shift counts only together
 * with Ctrl/Cmd ("mod"), so "?" and "B" work on every layout. Combos are written "mod+z",
 * "mod+shift+z", "[", " ", "Enter", "Delete".
 */
export interface KeyLike {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  target?: EventTarget | null;
  preventDefault(): void;
}

export interface KeyBinding {
  /** Combos that trigger it (none: a help row only, e.g. the mouse wheel). */
  keys?: string[];
  /** How the help shows the keys ("Ctrl+Z", "1 … 9"). */
  label: string;
  /** What it does, for the help. */
  help: string;
  /** Only when this says so (the binding is skipped otherwise and the key goes on). */
  when?: () => boolean;
  /** Stop the browser's own action for the key (Ctrl+S saving the page, space scrolling). */
  preventDefault?: boolean;
  run?(e: KeyLike): void;
  /** On key release (space: stop panning). */
  release?(e: KeyLike): void;
}

/** The combo of a key event: "mod+shift+z", "b", "Enter", "?". */
export function comboOf(e: Pick<KeyLike, "key" | "ctrlKey" | "metaKey" | "shiftKey">): string {
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (!(e.ctrlKey || e.metaKey)) return key;
  return `mod+${e.shiftKey ? "shift+" : ""}${key}`;
}

/** Whether the key is typed into a form field (then no shortcut applies; sliders and checkboxes excepted). */
export function typingInto(target: EventTarget | null | undefined): boolean {
  const t = target as { tagName?: string; type?: string } | null | undefined;
  if (!t || !t.tagName) return false;
  if (t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  return t.tagName === "INPUT" && t.type !== "range" && t.type !== "checkbox";
}

export class KeyMap {
  private readonly bindings: KeyBinding[] = [];

  constructor(bindings: KeyBinding[] = []) {
    bindings.forEach((b) => this.add(b));
  }

  add(binding: KeyBinding): void {
    this.bindings.push({ ...binding, keys: binding.keys?.map(normalise) });
  }

  /** The first binding for this event's combo whose `when` holds. */
  find(e: Pick<KeyLike, "key" | "ctrlKey" | "metaKey" | "shiftKey">): KeyBinding | undefined {
    const combo = comboOf(e);
    return this.bindings.find((b) => b.keys?.includes(combo) && (!b.when || b.when()));
  }

  /** Handle a keydown; true when a binding ran. */
  keydown(e: KeyLike): boolean {
    if (typingInto(e.target)) return false;
    const b = this.find(e);
    if (!b?.run) return false;
    if (b.preventDefault) e.preventDefault();
    b.run(e);
    return true;
  }

  keyup(e: KeyLike): boolean {
    const b = this.bindings.find((x) => x.release && x.keys?.includes(comboOf(e)));
    if (!b?.release) return false;
    b.release(e);
    return true;
  }

  /** [keys, what it does] rows, in table order, for the help dialog. */
  helpRows(): Array<[string, string]> {
    return this.bindings.map((b) => [b.label, b.help]);
  }
}

/** "Z" -> "z", "Mod+Shift+Z" -> "mod+shift+z"; named keys ("Enter") keep their case. */
function normalise(combo: string): string {
  const parts = combo.split("+");
  const key = parts.pop() ?? "";
  const mods = parts.map((m) => m.toLowerCase());
  const k = key.length === 1 ? key.toLowerCase() : key;
  return [...mods, k].join("+");
}
