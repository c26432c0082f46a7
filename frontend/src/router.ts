/**
 * A tiny client-side router. Each page module calls {@link registerRoute} once at import:
 *
 *     registerRoute("/projects/:projectId/train", renderTraining);
 *
 * `render(root, params)` fills `root` (an empty <main>) and may return a cleanup function that runs
 * when the user navigates away (stop timers, remove window listeners).
 */

export type Params = Record<string, string>;
export type Cleanup = () => void;
export type Render = (root: HTMLElement, params: Params) => void | Cleanup | Promise<void | Cleanup>;

interface Route {
  pattern: string;
  regex: RegExp;
  keys: string[];
  render: Render;
}

const routes: Route[] = [];
let cleanup: Cleanup | null = null;
let notFound: Render = (root) => {
  root.textContent = "Page not found.";
};
const listeners: Array<(path: string, params: Params) => void> = [];

/** Add a page: `pattern` like "/projects/:projectId" (a trailing slash is optional when matching). */
export function registerRoute(pattern: string, render: Render): void {
  const keys: string[] = [];
  const source = pattern
    .replace(/\/+$/, "")
    .split("/")
    .map((seg) => {
      if (seg.startsWith(":")) {
        keys.push(seg.slice(1));
        return "([^/]+)";
      }
      return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  routes.push({ pattern, regex: new RegExp(`^${source}/?$`), keys, render });
}

export function setNotFound(render: Render): void {
  notFound = render;
}

/** Called after every route change (the nav bar uses it to show the current project). */
export function onRouteChange(fn: (path: string, params: Params) => void): void {
  listeners.push(fn);
}

/** The route matching `path`, with its params. */
export function match(path: string): { route: Route | null; params: Params } {
  for (const route of routes) {
    const m = route.regex.exec(path);
    if (m) {
      const params: Params = {};
      route.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1])));
      return { route, params };
    }
  }
  return { route: null, params: {} };
}

/** Go to `path` (pushes history unless `replace`). */
export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

let renderSeq = 0;
async function render(): Promise<void> {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const root = document.getElementById("app")!;
  root.replaceChildren();
  root.className = "";
  const path = location.pathname === "" ? "/" : location.pathname;
  const { route, params } = match(path);
  listeners.forEach((fn) => fn(path, params));
  const result = await (route ? route.render : notFound)(root, params);
  if (typeof result === "function") {
    if (seq === renderSeq) cleanup = result;
    else result(); // the user navigated away while the page was loading
  }
}

/** Start routing: render the current URL, follow same-origin <a> clicks and back/forward. */
export function startRouter(): void {
  window.addEventListener("popstate", () => void render());
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/") || a.target || a.hasAttribute("download")) return;
    if (/^\/(api|admin|accounts|static|media)\//.test(href)) return;
    e.preventDefault();
    navigate(href);
  });
  void render();
}
