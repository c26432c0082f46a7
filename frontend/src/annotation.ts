/**
 * The annotation being edited: stored masks (base) + this session's strokes (undo/redo), saving with
 * optimistic concurrency (version; 409 = someone else saved), autosave, and a local draft that keeps
 * unsaved strokes across a reload when a save failed.
 */
import { api, ApiError, type AnnotationData } from "./api";
import { decodePng, encodeGreyPng, fromBase64, toBase64 } from "./png";
import { applyStroke, applyStrokeTail, cloneMasks, emptyMasks, maxInstance, replay, type Masks, type Rect, type Stroke } from "./raster";

export type SaveState = "saved" | "unsaved" | "saving" | "error" | "conflict" | "loading";

/** Stored masks of an annotation answer (empty masks when absent). */
export async function decodeAnnotation(a: AnnotationData, width: number, height: number): Promise<Masks> {
  const m = emptyMasks(width, height);
  if (a.classes_png) {
    const d = await decodePng(fromBase64(a.classes_png));
    if (d.width !== width || d.height !== height) throw new Error(`stored class mask is ${d.width}x${d.height}, image is ${width}x${height}`);
    for (let i = 0; i < d.data.length; i++) m.classes[i] = d.data[i];
  }
  if (a.instances_png) {
    const d = await decodePng(fromBase64(a.instances_png));
    if (d.width === width && d.height === height) m.instances.set(d.data);
  }
  return m;
}

interface Draft {
  version: number;
  strokes: Stroke[];
  savedAt: number;
}

export interface Conflict {
  theirs: AnnotationData;
  theirMasks: Masks;
}

export class AnnotationStore {
  base: Masks;
  masks: Masks;
  /** Strokes stored before this session (kept in the saved stroke list). */
  storedStrokes: Stroke[] = [];
  /** This session's strokes (undo pops from here), saved or not. */
  strokes: Stroke[] = [];
  /**
   * How many leading strokes of {@link strokes} the server has (as of the last successful save). The
   * session keeps saved strokes for undo, so `strokes.length` is not what a conflict puts at stake.
   */
  savedCount = 0;
  redoStack: Stroke[] = [];
  version = 0;
  state: SaveState = "loading";
  lastError = "";
  autosaveMs = 1500;
  onChange: ((rect: Rect | null) => void) | null = null;
  onState: ((s: SaveState) => void) | null = null;
  /** Called on 409; the page asks the user and answers with resolveConflict(). */
  onConflict: ((c: Conflict) => void) | null = null;
  private editSeq = 0;
  private savedSeq = 0;
  private timer = 0;
  private saving: Promise<void> | null = null;
  private readonly listeners: Array<(s: SaveState) => void> = [];

  constructor(readonly imageId: number, readonly width: number, readonly height: number) {
    this.base = emptyMasks(width, height);
    this.masks = emptyMasks(width, height);
  }

  get draftKey(): string {
    return `labseg-draft-${this.imageId}`;
  }
  get dirty(): boolean {
    return this.editSeq !== this.savedSeq;
  }
  /** This session's strokes the server does not have yet (what a 409 puts at stake, and what a merge replays). */
  get unsavedStrokes(): Stroke[] {
    return this.strokes.slice(this.savedCount);
  }

  /** Called after every state change, besides `onState` (panels that follow saves, e.g. the history). */
  listen(fn: (s: SaveState) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Load the stored annotation; restore a local draft (unsaved strokes) if one exists. Returns true if restored. */
  async load(): Promise<boolean> {
    const a = await api.get<AnnotationData>(`/images/${this.imageId}/annotation/`);
    this.base = await decodeAnnotation(a, this.width, this.height);
    this.storedStrokes = (a.strokes as Stroke[]) ?? [];
    this.version = a.version;
    this.strokes = [];
    this.savedCount = 0;
    this.redoStack = [];
    const draft = this.readDraft();
    if (draft && draft.strokes.length) {
      this.strokes = draft.strokes;
      this.editSeq++;
    }
    this.masks = replay(this.base, this.strokes);
    this.setState(this.dirty ? "unsaved" : "saved");
    this.onChange?.(null);
    if (this.dirty) this.scheduleSave();
    return this.dirty;
  }

  /** Next free instance id. */
  newInstanceId(): number {
    return maxInstance(this.masks) + 1;
  }

  // --- editing -------------------------------------------------------------------------------
  /** A stroke being drawn: paint it live from point index `from` (the whole stroke is added on commit). */
  paintLive(s: Stroke, from: number): Rect {
    return applyStrokeTail(this.masks, s, from);
  }

  /** Add a finished stroke. `alreadyPainted`: it was painted live (brush/eraser) so it is not applied again. */
  add(s: Stroke, alreadyPainted = false): void {
    const rect = alreadyPainted ? null : applyStroke(this.masks, s);
    this.strokes.push(s);
    this.redoStack = [];
    this.edited(rect);
  }

  undo(): boolean {
    const s = this.strokes.pop();
    if (!s) return false;
    // undoing a saved stroke: the server still has it, so it leaves the saved prefix
    this.savedCount = Math.min(this.savedCount, this.strokes.length);
    this.redoStack.push(s);
    this.masks = replay(this.base, this.strokes);
    this.edited(null);
    return true;
  }

  redo(): boolean {
    const s = this.redoStack.pop();
    if (!s) return false;
    this.strokes.push(s);
    const rect = applyStroke(this.masks, s);
    this.edited(rect);
    return true;
  }

  private edited(rect: Rect | null): void {
    this.editSeq++;
    if (this.state !== "conflict") this.setState("unsaved"); // a conflict waits for the user's choice
    this.writeDraft();
    this.onChange?.(rect);
    this.scheduleSave();
  }

  // --- saving --------------------------------------------------------------------------------
  scheduleSave(): void {
    clearTimeout(this.timer);
    if (this.state === "conflict") return;
    this.timer = window.setTimeout(() => void this.save(), this.autosaveMs);
  }

  /** Save now (waits for a save in flight first). `baseVersion` overrides the version (overwrite after 409). */
  async save(baseVersion?: number): Promise<void> {
    clearTimeout(this.timer);
    if (this.saving) await this.saving;
    if (!this.dirty && baseVersion === undefined) {
      this.setState("saved");
      return;
    }
    if (this.state === "conflict" && baseVersion === undefined) return;
    this.saving = this.doSave(baseVersion ?? this.version).finally(() => (this.saving = null));
    return this.saving;
  }

  private async doSave(version: number): Promise<void> {
    const seq = this.editSeq;
    const sent = this.strokes.slice();
    this.setState("saving");
    try {
      const body = await this.payload(version);
      const res = await api.put<AnnotationData>(`/images/${this.imageId}/annotation/`, body);
      this.version = res?.version ?? version + 1;
      this.savedSeq = seq;
      // the strokes sent are now stored, as far as the session still holds the same ones (undo meanwhile)
      let n = 0;
      while (n < sent.length && n < this.strokes.length && sent[n] === this.strokes[n]) n++;
      this.savedCount = n;
      if (!this.dirty) this.clearDraft();
      else this.writeDraft(); // the draft keeps only what is still unsaved
      this.setState(this.dirty ? "unsaved" : "saved");
      if (this.dirty) this.scheduleSave();
    } catch (err) {
      this.writeDraft();
      if (err instanceof ApiError && err.status === 409) {
        this.setState("conflict");
        try {
          const theirs = await api.get<AnnotationData>(`/images/${this.imageId}/annotation/`);
          const theirMasks = await decodeAnnotation(theirs, this.width, this.height);
          this.onConflict?.({ theirs, theirMasks });
        } catch (e) {
          this.lastError = String(e);
        }
        return;
      }
      this.lastError = err instanceof Error ? err.message : String(err);
      this.setState("error");
      // retry later (network blips); the draft keeps the work meanwhile
      if (!(err instanceof ApiError) || err.status === 0 || err.status >= 500) this.timer = window.setTimeout(() => void this.save(), 5000);
    }
  }

  /** The PUT body: PNG masks (classes 8-bit, instances 16-bit, absent when empty) + strokes + version. */
  async payload(version: number): Promise<Record<string, unknown>> {
    const m = this.masks;
    const classes = toBase64(await encodeGreyPng(m.classes, m.width, m.height));
    const anyInst = m.instances.some((v) => v !== 0);
    const instances = anyInst ? toBase64(await encodeGreyPng(m.instances, m.width, m.height)) : null;
    return { version, classes_png: classes, instances_png: instances, strokes: [...this.storedStrokes, ...this.strokes] };
  }

  /**
   * Answer a 409: "theirs" reloads the stored annotation (this session's strokes are dropped and the
   * draft removed); "mine" overwrites theirs with my masks; "merge" replays my strokes on top of theirs.
   */
  async resolveConflict(choice: "theirs" | "mine" | "merge", c: Conflict): Promise<void> {
    if (choice === "theirs") {
      this.clearDraft();
      this.savedSeq = this.editSeq;
      await this.load();
      return;
    }
    if (choice === "merge") {
      // only the strokes the server never had go on top of theirs: replaying saved ones would paint
      // over what the colleague changed after them
      this.base = cloneMasks(c.theirMasks);
      this.storedStrokes = (c.theirs.strokes as Stroke[]) ?? [];
      this.strokes = this.unsavedStrokes;
      this.savedCount = 0;
      this.redoStack = [];
      this.masks = replay(this.base, this.strokes);
      this.onChange?.(null);
    }
    this.version = c.theirs.version;
    this.editSeq++;
    this.setState("unsaved");
    await this.save(c.theirs.version);
  }

  private setState(s: SaveState): void {
    this.state = s;
    this.onState?.(s);
    this.listeners.forEach((fn) => fn(s));
  }

  private readDraft(): Draft | null {
    try {
      const raw = localStorage.getItem(this.draftKey);
      return raw ? (JSON.parse(raw) as Draft) : null;
    } catch {
      return null;
    }
  }
  private writeDraft(): void {
    try {
      // only what the server lacks: a reload replays the draft on top of the stored version
      const d: Draft = { version: this.version, strokes: this.unsavedStrokes, savedAt: Date.now() };
      localStorage.setItem(this.draftKey, JSON.stringify(d));
    } catch {
      /* storage full or disabled: the save status still says "unsaved" */
    }
  }
  private clearDraft(): void {
    try {
      localStorage.removeItem(this.draftKey);
    } catch {
      /* ignore */
    }
  }
}
