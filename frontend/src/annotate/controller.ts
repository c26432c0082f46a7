/**
 * The tool controller: which tool is active, and where pointer events go. A press belongs to the tool
 * that received it until the pointer is released, so switching tools mid-stroke (a key pressed while
 * painting) still finishes the stroke with the tool that began it.
 */
import type { DrawContext, Tool, ToolContext, ToolFactory, ToolPointer } from "./tools/types";

export class ToolController {
  readonly tools: readonly Tool[];
  private current: Tool;
  /** The tool that received the pointer press being held, if any. */
  private owner: Tool | null = null;
  private readonly listeners: Array<(tool: Tool) => void> = [];

  constructor(factories: readonly ToolFactory[], ctx: ToolContext) {
    this.tools = factories.map((make) => make(ctx));
    if (!this.tools.length) throw new Error("the annotate page needs at least one tool");
    const ids = new Set(this.tools.map((t) => t.id));
    if (ids.size !== this.tools.length) throw new Error("two tools share an id");
    this.current = this.tools[0];
    this.current.activate?.();
  }

  get active(): Tool {
    return this.current;
  }

  get(id: string): Tool | undefined {
    return this.tools.find((t) => t.id === id);
  }

  /** Called with the new tool after every switch (buttons, cursor). */
  onChange(fn: (tool: Tool) => void): void {
    this.listeners.push(fn);
  }

  /** Make `id` the active tool; choosing the active tool again drops its shape in progress. */
  activate(id: string): void {
    const next = this.get(id);
    if (!next) throw new Error(`no tool "${id}"`);
    this.current.deactivate?.();
    this.current = next;
    next.activate?.();
    this.listeners.forEach((fn) => fn(next));
  }

  pointerDown(e: ToolPointer): void {
    this.owner = this.current;
    this.current.onPointerDown?.(e);
  }

  pointerMove(e: ToolPointer): void {
    (this.owner ?? this.current).onPointerMove?.(e);
  }

  /** pointerup and pointercancel. */
  pointerUp(e: ToolPointer): void {
    const tool = this.owner ?? this.current;
    this.owner = null;
    tool.onPointerUp?.(e);
  }

  commit(): void {
    this.current.commit?.();
  }

  cancel(): void {
    this.current.cancel?.();
  }

  draw(d: DrawContext): void {
    this.current.draw?.(d);
  }
}
