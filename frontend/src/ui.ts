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

/** Elements that take keyboard focus, in tab order. */
const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export interface Modal {
  /** The dialog box (append content here). */
  box: HTMLElement;
  /** Remove the dialog and give the focus back to where it was. */
  close(): void;
}

export interface ModalOptions {
  /** Esc and a click outside the box call this (then close). Without it the user must pick a button. */
  onDismiss?: () => void;
  testid?: string;
  wide?: boolean;
}

/** Dialogs open now, the newest last (only the newest reacts to keys). */
const openModals: HTMLElement[] = [];

/**
 * The one dialog helper every dialog uses: a modal box over a backdrop with Esc and click-outside (when
 * `onDismiss` is given), a focus trap (Tab and Shift+Tab cycle inside the box; focus that escapes is
 * brought back) and the focus returned to the opener on close. Keys pressed inside a dialog do not reach
 * the page's shortcuts.
 */
export function openModal(title: string, body: Node | string, opts: ModalOptions = {}): Modal {
  const opener = document.activeElement as HTMLElement | null;
  const titleId = `modal-title-${Math.random().toString(36).slice(2, 9)}`;
  const backdrop = h("div", { class: "modal-backdrop", "data-testid": "modal-backdrop" });
  const box = h("div", { class: `modal${opts.wide ? " wide" : ""}`, role: "dialog", "aria-modal": "true", "aria-labelledby": titleId, tabindex: "-1", "data-testid": opts.testid ?? "dialog" },
    h("h2", { id: titleId }, title), typeof body === "string" ? h("p", {}, body) : body);
  backdrop.append(box);
  let closed = false;
  const focusables = () => [...box.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => el.offsetParent !== null || el === document.activeElement);
  const close = () => {
    if (closed) return;
    closed = true;
    backdrop.remove();
    document.removeEventListener("focusin", keepFocus, true);
    openModals.splice(openModals.indexOf(backdrop), 1);
    if (opener && document.contains(opener)) opener.focus();
  };
  const dismiss = () => {
    if (!opts.onDismiss) return;
    close();
    opts.onDismiss();
  };
  const keepFocus = (e: FocusEvent) => {
    if (openModals[openModals.length - 1] !== backdrop) return;
    if (!box.contains(e.target as Node)) (focusables()[0] ?? box).focus();
  };
  backdrop.addEventListener("keydown", (e) => {
    e.stopPropagation(); // the page's shortcuts (window listeners) never see keys typed in a dialog
    if (e.key === "Escape") {
      e.preventDefault();
      dismiss();
    } else if (e.key === "Tab") {
      const els = focusables();
      if (!els.length) return e.preventDefault();
      const i = els.indexOf(document.activeElement as HTMLElement);
      if (e.shiftKey && i <= 0) {
        e.preventDefault();
        els[els.length - 1].focus();
      } else if (!e.shiftKey && i === els.length - 1) {
        e.preventDefault();
        els[0].focus();
      }
    }
  });
  backdrop.addEventListener("keyup", (e) => e.stopPropagation());
  backdrop.addEventListener("mousedown", (e) => {
    if (e.target === backdrop) dismiss();
  });
  document.body.append(backdrop);
  openModals.push(backdrop);
  document.addEventListener("focusin", keepFocus, true);
  const first = box.querySelector<HTMLElement>("[autofocus]") ?? box.querySelector<HTMLElement>("input, select, textarea") ?? box.querySelector<HTMLElement>("button.primary") ?? focusables()[0] ?? box;
  first.focus();
  return { box, close };
}

export interface DialogButton<T extends string> {
  label: string;
  value: T;
  primary?: boolean;
  testid?: string;
  /** What Esc and a click outside choose (also any button valued "cancel" or "close"). */
  cancel?: boolean;
}

/**
 * A modal dialog with buttons; resolves with the chosen button's value. Esc and a click outside choose
 * the button marked `cancel` (or valued "cancel"/"close"); a dialog without one needs a button press.
 */
export function dialog<T extends string>(title: string, body: Node | string, buttons: Array<DialogButton<T>>): Promise<T> {
  return new Promise((resolve) => {
    const safe = buttons.find((b) => b.cancel) ?? buttons.find((b) => b.value === "cancel" || b.value === "close");
    const m = openModal(title, body, { onDismiss: safe ? () => resolve(safe.value) : undefined });
    const row = h("div", { class: "modal-buttons" });
    let safeButton: HTMLElement | null = null;
    for (const b of buttons) {
      const el = h("button", { class: b.primary ? "primary" : "", "data-testid": b.testid ?? null, onclick: () => { m.close(); resolve(b.value); } }, b.label);
      if (b === safe) safeButton = el;
      row.append(el);
    }
    m.box.append(row);
    // Enter must never pick a destructive choice by accident: the focus starts on the safe button, or on
    // the box itself when every choice changes something (Tab reaches the buttons).
    (safeButton ?? m.box).focus();
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
  nav.append(h("span", { class: "spacer" }),
    h("a", { href: "/getting-started", "data-testid": "nav-guide", onclick: (e: Event) => {
      if (!guideOpener) return;
      e.preventDefault();
      guideOpener();
    } }, "Getting started"),
    h("a", { href: "/api/docs/" }, "API"), h("a", { href: "/accounts/logout/", onclick: logout }, "Log out"));
}

let guideOpener: (() => void) | null = null;

/** The nav bar's "Getting started" link opens this (src/guide.ts registers it in src/extensions.ts). */
export function setGuideOpener(open: () => void): void {
  guideOpener = open;
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
