/** The annotate page's frame: head (file, size, prev/next, cursor position, save status), toolbar, canvas stage, side panel. */
import { api, type ImageInfo, type Project } from "../api";
import { annotateUrl } from "../pages/project";
import { h } from "../ui";

export interface AnnotateLayout {
  stage: HTMLElement;
  toolbar: HTMLElement;
  side: HTMLElement;
  /** Cursor position and zoom, in the head. */
  info: HTMLElement;
  /** The extensions' toolbar group and side-panel section (each hidden while empty). */
  extToolbar: HTMLElement;
  extPanel: HTMLElement;
}

export function annotateLayout(root: HTMLElement, project: Project, image: ImageInfo, status: HTMLElement): AnnotateLayout {
  root.className = "annotate-page";
  const l: AnnotateLayout = {
    stage: h("div", { class: "stage" }),
    toolbar: h("div", { class: "toolbar" }),
    side: h("aside", { class: "side" }),
    info: h("span", { class: "muted coords" }),
    extToolbar: h("span", { class: "group ext", hidden: true }),
    extPanel: h("section", { class: "panel ext", hidden: true }),
  };
  root.append(
    h("div", { class: "annotate-head" },
      h("strong", {}, image.original_filename),
      h("span", { class: "muted" }, ` ${image.width}×${image.height} · ${image.channels}ch ${image.dtype}`),
      navLinks(project.id, image.id), l.info, status),
    l.toolbar,
    h("div", { class: "annotate-body" }, l.stage, l.side));
  return l;
}

/** Append to a group that is hidden while it is empty. */
export function appendShown(group: HTMLElement, ...nodes: Node[]): void {
  group.append(...nodes);
  group.hidden = !group.childElementCount;
}

/** Previous / next image links (by id order in the project). */
function navLinks(projectId: number, imageId: number): HTMLElement {
  const box = h("span", { class: "img-nav" });
  void api.get<{ results?: ImageInfo[] } | ImageInfo[]>(`/projects/${projectId}/images/?page_size=1000`).then((r) => {
    const list = Array.isArray(r) ? r : r.results ?? [];
    const i = list.findIndex((im) => im.id === imageId);
    if (i > 0) box.append(h("a", { href: annotateUrl(projectId, list[i - 1].id), "data-testid": "prev-image" }, "‹ prev"));
    if (i >= 0 && i < list.length - 1) box.append(h("a", { href: annotateUrl(projectId, list[i + 1].id), "data-testid": "next-image" }, "next ›"));
  }).catch(() => undefined);
  return box;
}
