/** The annotate page's parts without a browser: tool switching, pointer events into strokes, the key table. */
import { describe, expect, it } from "vitest";
import { emptyMasks, applyStroke, applyStrokeTail, type Stroke } from "../raster";
import { ToolController } from "./controller";
import { EditorState } from "./editor";
import { comboOf, KeyMap, type KeyLike } from "./keymap";
import { annotateShortcuts, type ShortcutActions } from "./shortcuts";
import { TOOLS } from "./tools";
import type { ToolContext, ToolFactory, ToolPointer } from "./tools/types";

/** A store that keeps strokes and paints them with the real rasteriser. */
function fakeStore(w = 20, h = 10) {
  const masks = emptyMasks(w, h);
  const strokes: Stroke[] = [];
  return {
    masks,
    strokes,
    paintLive: (s: Stroke, from: number) => applyStrokeTail(masks, s, from),
    add: (s: Stroke, alreadyPainted = false) => {
      if (!alreadyPainted) applyStroke(masks, s);
      strokes.push(structuredClone(s));
    },
  };
}

function setup(factories: ToolFactory[] = TOOLS) {
  const store = fakeStore();
  let nextId = 1;
  const editor = new EditorState([1, 2, 3], () => nextId++);
  const log: string[] = [];
  const ctx: ToolContext = {
    editor, store, width: 20, height: 10,
    maskChanged: () => log.push("maskChanged"),
    requestRender: () => log.push("render"),
    scale: () => 1,
    notify: (m) => log.push(`notify ${m}`),
  };
  const tools = new ToolController(factories, ctx);
  return { store, editor, tools, log };
}

function ptr(type: ToolPointer["type"], x: number, y: number, more: Partial<ToolPointer> = {}): ToolPointer & { captured: boolean } {
  const e = { type, point: [x, y] as [number, number], points: [[x, y] as [number, number]], button: 0, buttons: type === "pointerup" ? 0 : 1, shiftKey: false, captured: false, capture: () => (e.captured = true), ...more };
  return e;
}

describe("tool controller", () => {
  it("starts with the first tool and switches, telling its listeners", () => {
    const { tools } = setup();
    expect(tools.tools.map((t) => t.id)).toEqual(["brush", "eraser", "fill", "polygon", "pick", "measure"]);
    expect(tools.active.id).toBe("brush");
    const seen: string[] = [];
    tools.onChange((t) => seen.push(t.id));
    tools.activate("fill");
    tools.activate("pick");
    expect(tools.active.id).toBe("pick");
    expect(seen).toEqual(["fill", "pick"]);
    expect(() => tools.activate("nope")).toThrow(/no tool/);
  });

  it("calls deactivate on the old tool and activate on the new one", () => {
    const calls: string[] = [];
    const make = (id: string): ToolFactory => () => ({ id, label: id, key: id, help: id, cursor: "crosshair", usesClass: true,
      activate: () => calls.push(`+${id}`), deactivate: () => calls.push(`-${id}`) });
    const { tools } = setup([make("a"), make("b")]);
    tools.activate("b");
    tools.activate("b");
    expect(calls).toEqual(["+a", "-a", "+b", "-b", "+b"]);
  });

  it("refuses two tools with one id", () => {
    expect(() => setup([TOOLS[0], TOOLS[0]])).toThrow(/share an id/);
  });

  it("a brush drag becomes one stroke of image points, painted live and added on release", () => {
    const { tools, store, editor, log } = setup();
    editor.setRadius(1);
    editor.setClass(3);
    const down = ptr("pointerdown", 2, 2);
    tools.pointerDown(down);
    expect(down.captured).toBe(true);
    expect(store.masks.classes[2 * 20 + 2]).toBe(3); // painted live, before release
    tools.pointerMove(ptr("pointermove", 2, 2, { points: [[3, 2], [4, 2], [4, 2]] }));
    tools.pointerMove(ptr("pointermove", 6, 2));
    expect(store.strokes).toEqual([]);
    tools.pointerUp(ptr("pointerup", 6, 2));
    expect(store.strokes).toEqual([{ tool: "brush", class: 3, radius: 1, points: [[2, 2], [3, 2], [4, 2], [6, 2]] }]);
    expect(store.masks.classes[2 * 20 + 7]).toBe(3);
    expect(log.filter((x) => x === "maskChanged").length).toBe(3);
  });

  it("finishes a stroke with the tool that began it when the tool changes mid-drag", () => {
    const { tools, store } = setup();
    tools.pointerDown(ptr("pointerdown", 1, 1));
    tools.activate("eraser"); // E pressed while painting
    tools.pointerMove(ptr("pointermove", 5, 1));
    tools.pointerUp(ptr("pointerup", 5, 1));
    expect(store.strokes.map((s) => [s.tool, s.points.length])).toEqual([["brush", 2]]);
    tools.pointerDown(ptr("pointerdown", 3, 1));
    tools.pointerUp(ptr("pointerup", 3, 1));
    expect(store.strokes[1]).toMatchObject({ tool: "eraser", class: 0 });
  });

  it("fill and polygon write instance ids in instance mode; Enter (commit) closes the polygon", () => {
    const { tools, store, editor } = setup();
    editor.setInstanceMode(true);
    tools.activate("polygon");
    for (const [x, y] of [[1, 1], [8, 1], [8, 6], [1, 6]]) {
      tools.pointerDown(ptr("pointerdown", x, y));
      tools.pointerUp(ptr("pointerup", x, y));
    }
    expect(store.strokes).toEqual([]); // clicks add vertices
    tools.commit();
    expect(store.strokes[0]).toMatchObject({ tool: "polygon", class: 2, instance: 1 });
    tools.activate("fill");
    tools.pointerDown(ptr("pointerdown", 15, 8));
    tools.pointerDown(ptr("pointerdown", 99, 99)); // outside: nothing
    expect(store.strokes.map((s) => [s.tool, s.instance])).toEqual([["polygon", 1], ["fill", 2]]);
  });

  it("Escape (cancel) and switching tools drop the polygon in progress", () => {
    const { tools, store } = setup();
    tools.activate("polygon");
    for (const [x, y] of [[1, 1], [8, 1], [8, 6]]) tools.pointerDown(ptr("pointerdown", x, y));
    tools.cancel();
    tools.commit();
    expect(store.strokes).toEqual([]);
  });

  it("pick keeps painting the clicked object and shift+click merges another into it", () => {
    const { tools, store, editor, log } = setup();
    store.masks.instances[2 * 20 + 2] = 5;
    store.masks.classes[2 * 20 + 2] = 3;
    store.masks.instances[2 * 20 + 9] = 6;
    tools.activate("pick");
    tools.pointerDown(ptr("pointerdown", 2, 2));
    expect([editor.instanceMode, editor.currentInstance, editor.pinned, editor.cls]).toEqual([true, 5, true, 3]);
    expect(editor.instanceLabel()).toBe("#5 (picked)");
    tools.pointerDown(ptr("pointerdown", 9, 2, { shiftKey: true }));
    expect(store.strokes).toEqual([{ tool: "instance_merge", class: 0, radius: 0, points: [[9, 2]], instance: 5, from: 6 }]);
    expect(log).toContain("notify Merged #6 into #5");
  });
});

function key(k: string, mods: Partial<KeyLike> = {}): KeyLike & { prevented: boolean } {
  const e = { key: k, ctrlKey: false, metaKey: false, shiftKey: false, target: null, prevented: false, preventDefault: () => (e.prevented = true), ...mods };
  return e;
}

describe("key map", () => {
  it("normalises combos: letters ignore case, shift counts only with a modifier", () => {
    expect(comboOf(key("B", { shiftKey: true }))).toBe("b");
    expect(comboOf(key("Z", { ctrlKey: true, shiftKey: true }))).toBe("mod+shift+z");
    expect(comboOf(key("s", { metaKey: true }))).toBe("mod+s");
    expect(comboOf(key("Enter"))).toBe("Enter");
  });

  it("dispatches the page's table to tools, classes, the editor and actions", () => {
    const { tools, editor } = setup();
    const done: string[] = [];
    const act = (name: string) => () => void done.push(name);
    const actions: ShortcutActions = { undo: act("undo"), redo: act("redo"), save: act("save"), chooseClass: (c) => done.push(`class ${c}`),
      setPanKey: (d) => done.push(`pan ${d}`), fit: act("fit"), toggleMask: act("mask"), deletePicked: act("delete"), help: act("help") };
    const keys = new KeyMap(annotateShortcuts(tools, editor, actions));
    keys.keydown(key("p"));
    expect(tools.active.id).toBe("polygon");
    keys.keydown(key("E", { shiftKey: true }));
    expect(tools.active.id).toBe("eraser");
    keys.keydown(key("3"));
    keys.keydown(key("]"));
    keys.keydown(key("]"));
    keys.keydown(key("["));
    expect(editor.radius).toBe(7);
    const undo = key("z", { ctrlKey: true });
    keys.keydown(undo);
    expect(undo.prevented).toBe(true);
    keys.keydown(key("Z", { ctrlKey: true, shiftKey: true }));
    keys.keydown(key("y", { metaKey: true }));
    keys.keydown(key("b", { ctrlKey: true })); // no binding: the browser keeps the key
    keys.keydown(key("Delete")); // nothing picked: skipped
    keys.keydown(key(" "));
    keys.keyup(key(" "));
    keys.keydown(key("?", { shiftKey: true }));
    expect(done).toEqual(["class 3", "undo", "redo", "redo", "pan true", "pan false", "help"]);
    editor.pickInstance(4);
    keys.keydown(key("Backspace"));
    expect(done.at(-1)).toBe("delete");
    keys.keydown(key("i"));
    expect(editor.instanceMode).toBe(false);
  });

  it("ignores keys typed into text fields but not on sliders", () => {
    const { tools, editor } = setup();
    const keys = new KeyMap(annotateShortcuts(tools, editor, {} as ShortcutActions));
    expect(keys.keydown(key("f", { target: { tagName: "INPUT", type: "number" } as unknown as EventTarget }))).toBe(false);
    expect(tools.active.id).toBe("brush");
    expect(keys.keydown(key("f", { target: { tagName: "INPUT", type: "range" } as unknown as EventTarget }))).toBe(true);
    expect(tools.active.id).toBe("fill");
  });

  it("Enter closes a polygon only while the polygon tool is active", () => {
    const { tools, editor } = setup();
    const keys = new KeyMap(annotateShortcuts(tools, editor, {} as ShortcutActions));
    expect(keys.keydown(key("Enter"))).toBe(false);
    tools.activate("polygon");
    expect(keys.keydown(key("Enter"))).toBe(true);
  });

  it("the help lists every tool's key and every table row, in order", () => {
    const { tools, editor } = setup();
    const rows = new KeyMap(annotateShortcuts(tools, editor, {} as ShortcutActions)).helpRows();
    expect(rows.slice(0, 5).map((r) => r[0])).toEqual(["B", "E", "F", "P", "K"]);
    expect(rows.map((r) => r[1])).toContain("undo / redo");
    expect(rows.find((r) => r[0] === "wheel")?.[1]).toBe("zoom to the cursor");
    expect(rows.every(([k, v]) => k && v)).toBe(true);
  });
});

describe("measure tool", () => {
  it("reads a width in image pixels by drag, paints nothing, and gives the median of the last few", async () => {
    const { lengthOf, median, measureText, MEASURE_KEEP } = await import("./tools/measure");
    expect(lengthOf([2, 3], [8, 11])).toBe(10);  // a 6-8-10 triangle
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const { store, tools, log } = setup();
    tools.activate("measure");
    const drag = (a: [number, number], b: [number, number]) => {
      const down = ptr("pointerdown", ...a);
      tools.pointerDown(down);
      expect(down.captured).toBe(true);
      tools.pointerMove(ptr("pointermove", ...b));
      tools.pointerUp(ptr("pointerup", ...b));
    };
    drag([2, 3], [8, 11]);
    expect(log).toContain("notify 10.0 px across. Measure a few objects: their median is the object diameter to set on the project page.");
    drag([0, 0], [4, 0]);
    drag([0, 0], [0, 6]);  // 10, 4, 6: median 6
    expect(log[log.length - 2]).toBe(`notify ${measureText(6, [10, 4, 6])}`);
    expect(measureText(6, [10, 4, 6])).toBe("6.0 px across; the median of the last 3 is 6.0 px (the project page's object diameter).");
    for (let i = 0; i < MEASURE_KEEP; i++) drag([0, 0], [0, 2]);  // only the last 5 count: all 2
    expect(log.filter((m) => m.startsWith("notify")).pop()).toContain("the median of the last 5 is 2.0 px");
    tools.pointerDown(ptr("pointerdown", 3, 3));
    tools.pointerUp(ptr("pointerup", 3, 3));  // a click is no measurement
    expect(log.filter((m) => m.startsWith("notify")).length).toBe(3 + MEASURE_KEEP);
    expect(store.strokes).toEqual([]);
    expect(Array.from(store.masks.classes).every((v) => v === 0)).toBe(true);
  });

  it("offers the median of 3 or more widths (rounded to 0.1 px) as the object diameter, where the page takes it", async () => {
    const { store, editor } = setup();
    const offered: number[] = [];
    const ctx: ToolContext = { editor, store, width: 20, height: 10, maskChanged: () => {}, requestRender: () => {},
      scale: () => 1, notify: () => {}, offerDiameter: (px) => offered.push(px) };
    const { measureTool } = await import("./tools/measure");
    const tool = measureTool(ctx);
    const drag = (dx: number, dy: number) => {
      tool.onPointerDown!(ptr("pointerdown", 0, 0));
      tool.onPointerUp!(ptr("pointerup", dx, dy));
    };
    drag(3, 4);  // 5
    drag(1, 1);  // 1.414...
    expect(offered).toEqual([]);  // under 3 widths: nothing offered
    drag(6, 8);  // 10: median of 5, 1.41, 10 = 5
    drag(2, 3);  // 3.606: median of 5, 1.41, 10, 3.61 = (3.606 + 5) / 2 = 4.303 -> 4.3
    expect(offered).toEqual([5, 4.3]);
  });
});
