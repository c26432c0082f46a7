/**
 * The annotation store against a fake server: which strokes a 409 puts at stake (issue 11.5 counted 4
 * unsaved strokes when there was 1: strokes already saved in this session were counted, and the merge
 * replayed them on top of the colleague's version).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AnnotationData } from "./api";
import type { Stroke } from "./raster";

/** The server: one annotation row with a version; a PUT with a stale version answers 409. */
const server = { version: 0, classes_png: null as string | null, strokes: [] as unknown[], puts: 0 };

vi.mock("./api", () => {
  class ApiError extends Error {
    constructor(readonly status: number, readonly detail: string) {
      super(detail);
    }
  }
  const row = (): AnnotationData => ({ version: server.version, classes_png: server.classes_png, instances_png: null, strokes: server.strokes, updated_by: "olivia" });
  return {
    ApiError,
    api: {
      get: async () => row(),
      put: async (_path: string, body: { version: number; classes_png: string; strokes: unknown[] }) => {
        server.puts++;
        if (body.version !== server.version) throw new ApiError(409, "stale");
        server.version++;
        server.classes_png = body.classes_png;
        server.strokes = body.strokes;
        return row();
      },
    },
  };
});

const { AnnotationStore } = await import("./annotation");

const storage = new Map<string, string>();
beforeEach(() => {
  Object.assign(server, { version: 0, classes_png: null, strokes: [], puts: 0 });
  storage.clear();
  vi.stubGlobal("window", globalThis);
  vi.stubGlobal("localStorage", {
    getItem: (k: string) => storage.get(k) ?? null,
    setItem: (k: string, v: string) => void storage.set(k, v),
    removeItem: (k: string) => void storage.delete(k),
  });
});
afterEach(() => vi.unstubAllGlobals());

const dot = (x: number, cls = 2): Stroke => ({ tool: "brush", class: cls, radius: 1, points: [[x, 2]] });

async function storeAtConflict() {
  const store = new AnnotationStore(7, 20, 6);
  store.autosaveMs = 1e9; // saves only when the test says so
  const conflicts: unknown[] = [];
  store.onConflict = (c) => conflicts.push(c);
  await store.load();
  // three strokes, saved (they stay in the session for undo)
  for (const x of [2, 5, 8]) store.add(dot(x));
  await store.save();
  expect(store.state).toBe("saved");
  // a colleague saves on top, then one more stroke here: the save answers 409
  server.version++;
  server.strokes = [...server.strokes, { tool: "brush", class: 3, radius: 1, points: [[15, 2]] }];
  store.add(dot(12));
  await store.save();
  return { store, conflicts };
}

describe("unsaved strokes at a conflict", () => {
  it("counts only the strokes the server lacks", async () => {
    const { store, conflicts } = await storeAtConflict();
    expect(store.state).toBe("conflict");
    expect(conflicts).toHaveLength(1);
    expect(store.strokes).toHaveLength(4); // kept for undo
    expect(store.unsavedStrokes).toEqual([dot(12)]);
  });

  it("keeps only the unsaved strokes in the local draft", async () => {
    const { store } = await storeAtConflict();
    const draft = JSON.parse(storage.get(store.draftKey)!) as { strokes: Stroke[] };
    expect(draft.strokes).toEqual([dot(12)]);
  });

  it("merges by replaying only the unsaved strokes on top of theirs", async () => {
    const { store, conflicts } = await storeAtConflict();
    const theirMasks = store.base; // their masks: here the stored ones as loaded (empty)
    const theirStrokes = server.strokes;
    await store.resolveConflict("merge", { theirs: { version: server.version, classes_png: null, instances_png: null, strokes: theirStrokes }, theirMasks });
    expect(conflicts).toHaveLength(1);
    expect(store.state).toBe("saved");
    // their empty mask + my one unsaved stroke: the three saved strokes are not painted again
    expect(store.masks.classes[2 * 20 + 12]).toBe(2);
    expect(store.masks.classes[2 * 20 + 5]).toBe(0);
    expect(server.strokes).toEqual([...theirStrokes, dot(12)]);
  });

  it("undoing a saved stroke leaves the saved prefix", async () => {
    const store = new AnnotationStore(8, 20, 6);
    store.autosaveMs = 1e9;
    await store.load();
    store.add(dot(2));
    store.add(dot(5));
    await store.save();
    store.undo();
    store.add(dot(9));
    expect(store.savedCount).toBe(1);
    expect(store.unsavedStrokes).toEqual([dot(9)]);
  });
});
