/** The annotate page's tools, in toolbar order. Adding a tool: a file in this folder and one line here. */
import { brushTool, eraserTool } from "./brush";
import { fillTool } from "./fill";
import { measureTool } from "./measure";
import { pickTool } from "./pick";
import { polygonTool } from "./polygon";
import type { ToolFactory } from "./types";

export const TOOLS: ToolFactory[] = [
  brushTool,
  eraserTool,
  fillTool,
  polygonTool,
  pickTool,
  measureTool,
];
