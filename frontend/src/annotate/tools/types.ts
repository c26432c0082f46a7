/**
 * The interface every editing tool of the annotate page implements. A tool is a small object made by a
 * factory from a {@link ToolContext}; it keeps its own in-progress state (a live stroke, polygon
 * vertices) and receives pointer events already converted to image pixels. To add a tool: one file
 * exporting a {@link ToolFactory}, and one line in `tools/index.ts`.
 */
import type { Rect, Stroke } from "../../raster";
import type { Masks } from "../../raster";
import type { EditorState } from "../editor";

/** The part of the annotation store the tools use (the page passes the real AnnotationStore). */
export interface StrokeSink {
  readonly masks: Masks;
  paintLive(s: Stroke, from: number): Rect;
  add(s: Stroke, alreadyPainted?: boolean): void;
}

/** What a tool may touch: the shared editor state, the strokes, and the view. */
export interface ToolContext {
  editor: EditorState;
  store: StrokeSink;
  width: number;
  height: number;
  /** The mask changed (live painting): redraw it. */
  maskChanged(): void;
  /** Redraw the tool's feedback (cursor, polygon in progress). */
  requestRender(): void;
  /** Screen pixels per image pixel. */
  scale(): number;
  /** A short message to the user. */
  notify(message: string): void;
  /** The Measure tool's median width (px) of 3 or more objects: the page may offer to set it as the project's
   * object diameter (owners only; absent: nothing offered). */
  offerDiameter?(px: number): void;
}

/** A pointer event in image coordinates (integer pixels). */
export interface ToolPointer {
  type: "pointerdown" | "pointermove" | "pointerup" | "pointercancel";
  point: [number, number];
  /** All positions since the last event (coalesced pointer events), the last one = `point`. */
  points: Array<[number, number]>;
  button: number;
  /** Pressed buttons (bit 1 = primary). */
  buttons: number;
  shiftKey: boolean;
  /** Keep receiving this pointer's events outside the canvas (pointer capture). */
  capture(): void;
}

/** What a tool's feedback drawing gets (screen coordinates are canvas pixels). */
export interface DrawContext {
  ctx: CanvasRenderingContext2D;
  /** The pointer on the canvas, or null when it is outside. */
  cursor: [number, number] | null;
  toScreen(x: number, y: number): [number, number];
  toImage(sx: number, sy: number): [number, number];
  scale: number;
  /** The colour of a class index (CSS). */
  colorOf(cls: number): string;
}

export interface Tool {
  id: string;
  /** Button text. */
  label: string;
  /** The shortcut that selects the tool (a letter, shown on the button and in the help). */
  key: string;
  /** What the key does, for the help. */
  help: string;
  /** CSS cursor over the canvas while the tool is active. */
  cursor: string;
  /** Whether the tool paints the chosen class (choosing a class switches from a tool that does not to the brush). */
  usesClass: boolean;
  activate?(): void;
  /** Drop any shape in progress (also when the same tool is chosen again). */
  deactivate?(): void;
  onPointerDown?(e: ToolPointer): void;
  onPointerMove?(e: ToolPointer): void;
  onPointerUp?(e: ToolPointer): void;
  /** Finish the shape in progress (Enter, double click). */
  commit?(): void;
  /** Drop the shape in progress (Escape). */
  cancel?(): void;
  /** Feedback above the image (brush outline, polygon in progress). */
  draw?(d: DrawContext): void;
}

export type ToolFactory = (ctx: ToolContext) => Tool;

/** Whether image pixel `p` lies inside the image. */
export function inside(ctx: ToolContext, p: [number, number]): boolean {
  return p[0] >= 0 && p[1] >= 0 && p[0] < ctx.width && p[1] < ctx.height;
}
