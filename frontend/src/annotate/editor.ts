/**
 * What the painting tools share on the annotate page: the chosen class, the brush radius and the
 * instance mode (which object the next stroke belongs to). Plain state with change listeners; no DOM,
 * so the tools and their tests use it as is.
 */
export interface Ink {
  class: number;
  instance?: number;
}

export const MAX_RADIUS = 200;

export class EditorState {
  cls: number;
  radius = 6;
  instanceMode = false;
  /** The instance the next stroke paints (0: a new one is taken when the stroke starts). */
  currentInstance = 0;
  /** A picked instance keeps receiving strokes until "new object" (N); otherwise each stroke is a new object. */
  pinned = false;
  private readonly listeners: Array<() => void> = [];

  /** `classes`: the project's class indexes; `newInstanceId`: the next free id in the masks. */
  constructor(readonly classes: readonly number[], private readonly newInstanceId: () => number) {
    this.cls = classes.find((c) => c >= 2) ?? classes[0] ?? 1;
  }

  /** Listen to every change (the toolbar redraws its buttons, the viewer its brush cursor). */
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  private changed(): void {
    this.listeners.forEach((fn) => fn());
  }

  /** Choose a class; false (and nothing changes) when the project has no such class. */
  setClass(c: number): boolean {
    if (!this.classes.includes(c)) return false;
    this.cls = c;
    this.changed();
    return true;
  }

  setRadius(r: number): void {
    this.radius = Math.max(0, Math.min(MAX_RADIUS, Math.round(r) || 0));
    this.changed();
  }

  setInstanceMode(on: boolean): void {
    this.instanceMode = on;
    this.newObject();
  }

  /** The next stroke starts a new object. */
  newObject(): void {
    this.currentInstance = 0;
    this.pinned = false;
    this.changed();
  }

  /** Keep painting instance `id` (picked on the canvas) until "new object". */
  pickInstance(id: number): void {
    if (!this.instanceMode) this.setInstanceMode(true);
    this.currentInstance = id;
    this.pinned = true;
    this.changed();
  }

  /** After a stroke: a new object next time, unless an instance was picked. */
  strokeDone(): void {
    if (this.instanceMode && !this.pinned) this.currentInstance = 0;
    this.changed();
  }

  /** Class (and in instance mode the object id) a new stroke writes; takes a new id when none is current. */
  ink(): Ink {
    if (!this.instanceMode || this.cls <= 1) return { class: this.cls };
    if (!this.currentInstance) this.currentInstance = this.newInstanceId();
    this.changed();
    return { class: this.cls, instance: this.currentInstance };
  }

  /** "#3 (picked)", "new" or "" (not in instance mode), for the toolbar. */
  instanceLabel(): string {
    if (!this.instanceMode) return "";
    return this.currentInstance ? `#${this.currentInstance}${this.pinned ? " (picked)" : ""}` : "new";
  }
}
