/** The annotate page's shortcut table (the help dialog shows it in this order). */
import type { ToolController } from "./controller";
import type { EditorState } from "./editor";
import { comboOf, type KeyBinding } from "./keymap";

/** What the shortcuts act on besides the tools and the editor state. */
export interface ShortcutActions {
  undo: () => void;
  redo: () => void;
  save: () => void;
  chooseClass: (c: number) => void;
  /** Space held: the left button pans. */
  setPanKey: (down: boolean) => void;
  fit: () => void;
  toggleMask: () => void;
  deletePicked: () => void;
  help: () => void;
}

export function annotateShortcuts(tools: ToolController, editor: EditorState, a: ShortcutActions): KeyBinding[] {
  return [
    ...tools.tools.map((t): KeyBinding => ({ keys: [t.key], label: t.key, help: t.help, run: () => tools.activate(t.id) })),
    { keys: ["1", "2", "3", "4", "5", "6", "7", "8", "9"], label: "1 … 9", help: "class with that index", run: (e) => a.chooseClass(Number(e.key)) },
    { keys: ["[", "]"], label: "[ / ]", help: "smaller / larger brush", run: (e) => editor.setRadius(editor.radius + (e.key === "[" ? -1 : 1)) },
    { label: "wheel", help: "zoom to the cursor" },
    { keys: [" "], label: "space-drag / middle drag", help: "pan", preventDefault: true, run: () => a.setPanKey(true), release: () => a.setPanKey(false) },
    { keys: ["0"], label: "0", help: "fit the image", run: a.fit },
    { keys: ["i"], label: "I", help: "instance mode on/off (each new object gets a new id)", run: () => editor.setInstanceMode(!editor.instanceMode) },
    { label: "Shift+click (pick)", help: "merge the clicked instance into the picked one" },
    { keys: ["n"], label: "N", help: "new object (stop painting the picked instance)", run: () => editor.newObject() },
    { keys: ["Delete", "Backspace"], label: "Delete", help: "delete the picked instance", when: () => editor.currentInstance > 0, run: a.deletePicked },
    { keys: ["Enter"], label: "Enter", help: "close the polygon", when: () => !!tools.active.commit, run: () => tools.commit() },
    { keys: ["Escape"], label: "Esc", help: "cancel the polygon", run: () => tools.cancel() },
    { keys: ["mod+z", "mod+shift+z", "mod+y", "mod+shift+y"], label: "Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", help: "undo / redo", preventDefault: true, run: (e) => (comboOf(e) === "mod+z" ? a.undo() : a.redo()) },
    { keys: ["mod+s"], label: "Ctrl+S", help: "save now", preventDefault: true, run: a.save },
    { keys: ["o"], label: "O", help: "mask on/off", run: a.toggleMask },
    { keys: ["?"], label: "?", help: "this help", run: a.help },
  ];
}
