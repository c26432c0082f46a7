/**
 * What an extension of the annotate page gets, and the hook it registers with (in `src/extensions.ts`).
 * The page runs the hook once the editor is loaded; an entry may return a cleanup that runs when the user
 * leaves the page.
 */
import type { ImageInfo, Project } from "../api";
import type { AnnotationStore } from "../annotation";
import { Hook } from "../hooks";
import type { Viewer } from "../viewer";
import type { ToolController } from "./controller";
import type { EditorState } from "./editor";
import type { KeyMap } from "./keymap";

export interface AnnotateContext {
  project: Project;
  image: ImageInfo;
  viewer: Viewer;
  store: AnnotationStore;
  editor: EditorState;
  tools: ToolController;
  /** The page's shortcuts: an extension may add its own (they show in the help). */
  keys: KeyMap;
  canEdit: boolean;
  /** Add buttons to the extensions' toolbar group (hidden while empty). */
  addToolbar(...nodes: Node[]): void;
  /** Add a section to the side panel. */
  addPanel(...nodes: Node[]): void;
}

export const annotateHooks = new Hook<AnnotateContext>("annotate page");
