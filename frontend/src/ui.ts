/** Small DOM helpers shared by every page: element builder, toasts, error display, nav bar. */
import { ApiError, cookie } from "./api";

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

/** An attribute or value as text (numbers, booleans and strings; anything else as JSON). */
function attrText(v: unknown): string {
  return typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);
}

/**
 * Create an element: `h("button", {class: "primary", onclick: fn, "data-testid": "save"}, "Save")`.
 * Keys starting with "on" become listeners; `style` may be an object; `null`/`false` values are skipped.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v as EventListener);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "value" && "value" in el) (el as HTMLInputElement).value = attrText(v);
    else if (k === "checked" && "checked" in el) (el as HTMLInputElement).checked = Boolean(v);
    else el.setAttribute(k, v === true ? "" : attrText(v));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Element, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.append(c instanceof Node ? c : String(c));
  }
}

/** A human message for any thrown value. */
export function messageOf(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Show a transient message at the bottom right (errors stay longer and are announced). */
export function toast(message: string, kind: "info" | "error" | "ok" = "info", ms?: number): HTMLElement {
  const box = document.getElementById("toasts") ?? document.body;
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": `toast-${kind}` }, message);
  el.addEventListener("click", () => el.remove());
  box.append(el);
  setTimeout(() => el.remove(), ms ?? (kind === "error" ? 10000 : 3500));
  return el;
}

/** Report an error to the user (toast), and log it. */
export function showError(err: unknown, prefix = ""): void {
  console.error(err);
  toast((prefix ? prefix + ": " : "") + messageOf(err), "error");
}

/** An inline error block for a page that could not load. */
export function errorBlock(err: unknown, what = "Could not load this page"): HTMLElement {
  return h("div", { class: "error-block", role: "alert", "data-testid": "page-error" }, h("strong", {}, what + ": "), messageOf(err));
}

/** A modal dialog with buttons; resolves with the chosen button's value. */
export function dialog<T extends string>(title: string, body: Node | string, buttons: Array<{ label: string; value: T; primary?: boolean; testid?: string }>): Promise<T> {
  return new Promise((resolve) => {
    const backdrop = h("div", { class: "modal-backdrop" });
    const box = h("div", { class: "modal", role: "dialog", "aria-modal": "true", "data-testid": "dialog" }, h("h2", {}, title), typeof body === "string" ? h("p", {}, body) : body);
    const row = h("div", { class: "modal-buttons" });
    for (const b of buttons) {
      row.append(
        h("button", { class: b.primary ? "primary" : "", "data-testid": b.testid ?? null, onclick: () => { backdrop.remove(); resolve(b.value); } }, b.label),
      );
    }
    box.append(row);
    backdrop.append(box);
    document.body.append(backdrop);
  });
}

// --- navigation bar ------------------------------------------------------------------------
export interface NavLink {
  label: string;
  href: string;
  testid?: string;
}
const projectLinks: Array<(projectId: string) => NavLink> = [];

/** Pages of a project add their link here (e.g. training): `addProjectNavLink(id => ({label, href}))`. */
export function addProjectNavLink(make: (projectId: string) => NavLink): void {
  projectLinks.push(make);
}

/** Redraw the nav bar: "LabSeg · Projects", then links of the current project when there is one. */
export function renderNav(projectId?: string, projectName?: string): void {
  const nav = document.getElementById("nav");
  if (!nav) return;
  nav.replaceChildren();
  nav.append(h("a", { href: "/", class: "brand" }, "LabSeg"), h("a", { href: "/", "data-testid": "nav-projects" }, "Projects"));
  if (projectId) {
    nav.append(h("span", { class: "sep" }, "/"), h("a", { href: `/projects/${projectId}`, "data-testid": "nav-project" }, projectName || `Project ${projectId}`));
    for (const make of projectLinks) {
      const l = make(projectId);
      nav.append(h("a", { href: l.href, "data-testid": l.testid ?? null }, l.label));
    }
  }
  nav.append(h("span", { class: "spacer" }), h("a", { href: "/api/docs/" }, "API"), h("a", { href: "/accounts/logout/", onclick: logout }, "Log out"));
}

function logout(e: Event): void {
  // Django 5 logs out on POST only.
  e.preventDefault();
  const form = h("form", { method: "post", action: "/accounts/logout/" }, h("input", { type: "hidden", name: "csrfmiddlewaretoken", value: cookie("csrftoken") }));
  document.body.append(form);
  form.submit();
}


/** Text for a number of bytes. */
/** A name as a test id / CSS-safe word: "weight map" -> "weight-map". */
export function slug(name: string): string {
  return name.trim().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}
