/**
 * Canvas input: pointer events (mouse, pen, touch alike) become image-pixel events for the active tool;
 * the middle button or space + left button pans, the wheel zooms to the cursor. Also draws the active
 * tool's feedback (brush outline, polygon in progress) above the image.
 */
import type { Viewer } from "../viewer";
import type { ToolController } from "./controller";
import type { ToolPointer } from "./tools/types";

export interface CanvasInputOptions {
  canEdit: boolean;
  /** Shows the cursor's image position and the zoom. */
  info: HTMLElement;
  colorOf: (cls: number) => string;
}

export interface CanvasInput {
  /** Space held: the left button pans. */
  setPanKey: (down: boolean) => void;
}

export function attachCanvasInput(viewer: Viewer, tools: ToolController, opts: CanvasInputOptions): CanvasInput {
  const canvas = viewer.canvas;
  let pan: { x: number; y: number } | null = null;
  let spaceDown = false;
  let cursor: [number, number] | null = null;

  const imagePoint = (e: { clientX: number; clientY: number }): [number, number] => {
    const [x, y] = viewer.screenToImage(...viewer.eventPos(e));
    return [Math.floor(x), Math.floor(y)];
  };
  const toolEvent = (e: PointerEvent): ToolPointer => {
    const coalesced = e.type === "pointermove" && typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    const point = imagePoint(e);
    return {
      type: e.type as ToolPointer["type"],
      point,
      points: coalesced.length ? coalesced.map(imagePoint) : [point],
      button: e.button,
      buttons: e.buttons,
      shiftKey: e.shiftKey,
      capture: () => canvas.setPointerCapture(e.pointerId),
    };
  };
  const showCursor = () => (canvas.style.cursor = pan ? "grabbing" : spaceDown ? "grab" : tools.active.cursor);

  canvas.addEventListener("pointerdown", (e) => {
    canvas.focus();
    if (e.button === 1 || (e.button === 0 && spaceDown)) {
      pan = { x: e.clientX, y: e.clientY };
      canvas.setPointerCapture(e.pointerId);
      showCursor();
      e.preventDefault();
      return;
    }
    if (e.button !== 0 || !opts.canEdit) return;
    tools.pointerDown(toolEvent(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    cursor = viewer.eventPos(e);
    const [ix, iy] = viewer.screenToImage(...cursor);
    opts.info.textContent = ` x ${Math.floor(ix)}, y ${Math.floor(iy)} · zoom ${(viewer.scale * 100).toFixed(0)}%`;
    if (pan) {
      viewer.panBy(e.clientX - pan.x, e.clientY - pan.y);
      pan = { x: e.clientX, y: e.clientY };
      return;
    }
    tools.pointerMove(toolEvent(e));
    viewer.requestRender();
  });
  const endPointer = (e: PointerEvent) => {
    if (pan) {
      pan = null;
      showCursor();
      return;
    }
    tools.pointerUp(toolEvent(e));
  };
  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("pointerleave", () => {
    cursor = null;
    viewer.requestRender();
  });
  canvas.addEventListener("dblclick", () => tools.commit());
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.tabIndex = 0;
  wheelZoom(viewer);
  viewer.drawTop = (ctx) => tools.draw({
    ctx,
    cursor,
    toScreen: (x, y) => viewer.imageToScreen(x, y),
    toImage: (x, y) => viewer.screenToImage(x, y),
    scale: viewer.scale,
    colorOf: opts.colorOf,
  });
  tools.onChange(() => {
    showCursor();
    viewer.requestRender();
  });
  showCursor();
  return {
    setPanKey: (down: boolean) => {
      spaceDown = down;
      showCursor();
    },
  };
}

/** The wheel zooms about the cursor (a line-mode wheel in bigger steps). */
function wheelZoom(viewer: Viewer): void {
  viewer.canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [sx, sy] = viewer.eventPos(e);
    viewer.zoomAt(sx, sy, Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
  }, { passive: false });
}
