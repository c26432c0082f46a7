/**
 * Live training on the annotate page (issue 13): a Live toggle starts a session (POST /images/{id}/live/)
 * with the region in view, sends a heartbeat every 3 s that carries the page's masks when they changed
 * (PUT draft/, at most one per 500 ms, Retry-After on 429), follows pan and zoom (PATCH region), polls the
 * status every second and draws the newest overlay PNG over the image; "Keep this model" saves the network
 * as a model version. Alt+click on the overlay accepts the object under the cursor as a stroke of the
 * current class, Shift+Alt+click paints it as background (both ordinary strokes). Registered in
 * src/extensions.ts; owners and annotators only.
 */
import { api, ApiError, cookie, errorFrom } from "../api";
import { h, messageOf, showError, toast } from "../ui";
import type { AnnotateContext } from "./context";
import {
  correctionStroke, DraftTracker, isActive, type LiveRegion, type LiveStatus, overlayObject, type OverlayPixels,
  RateGate, sameRegion, statusLine, stopMessage, visibleRegion,
} from "./live-logic";

const HEARTBEAT_MS = 3000;
const POLL_MS = 1000;
/** A stroke reaches the server this soon after it ends (the heartbeat would take up to 3 s). */
const DRAFT_SOON_MS = 600;
const REGION_SETTLE_MS = 400;
const OVERLAY = "live";

interface ModelVersionRef {
  id: number;
  number: number;
}

export function livePanel(ctx: AnnotateContext): (() => void) | void {
  const { image, viewer, store, editor, canEdit } = ctx;
  if (!canEdit) return; // viewers cannot start a session (the API answers 403)
  const base = `/images/${image.id}/live/`;

  const toggle = h("button", { class: "tool", "data-testid": "live-toggle", title: "train a network while you paint; its prediction of the view refreshes by itself (Alt+click an object to accept it, Shift+Alt+click to mark it wrong)" }, "Live");
  const keep = h("button", { "data-testid": "live-keep", title: "save the live network as a new model version", disabled: true }, "Keep this model");
  const line = h("span", { class: "muted live-status", "data-testid": "live-status", "data-state": "off" }, "");
  ctx.addToolbar(toggle, keep, line);

  let session: LiveStatus | null = null;
  /** The newest session id of this page (Keep works on an ended session too). */
  let lastId = 0;
  let tracker: DraftTracker | null = null;
  const gate = new RateGate(500);
  let sending = false;
  let beatTimer = 0, soonTimer = 0, pollTimer = 0, regionTimer = 0;
  let shownStep = -1;
  let fetchingOverlay = false;
  let overlayPixels: OverlayPixels | null = null;
  let sentRegion: LiveRegion | null = null;
  let disposed = false;
  /** pagehide/beforeunload ran (a reload or close): the session id stays remembered for a reattach. */
  let unloaded = false;

  const show = (state: string, text: string) => {
    line.dataset.state = state;
    line.textContent = text;
    toggle.classList.toggle("active", state === "queued" || state === "running");
    toggle.setAttribute("aria-pressed", String(!!session));
    keep.disabled = !lastId;
  };

  const region = (): LiveRegion => {
    const [x0, y0] = viewer.screenToImage(0, 0);
    const [x1, y1] = viewer.screenToImage(viewer.viewWidth, viewer.viewHeight);
    return visibleRegion({ x0, y0, x1, y1 }, image.width, image.height);
  };

  const memoryKey = `labseg-live-${image.id}`;
  const remember = (id: number) => {
    try {
      if (id) sessionStorage.setItem(memoryKey, String(id));
      else sessionStorage.removeItem(memoryKey);
    } catch {
      /* storage disabled: no reattach after a reload */
    }
  };

  const stopTimers = () => {
    window.clearInterval(beatTimer);
    window.clearTimeout(soonTimer);
    window.clearTimeout(pollTimer);
    window.clearTimeout(regionTimer);
  };

  /** The session is over (turned off here, or ended on the server): Live shows off, with `message`. */
  const ended = (message: string) => {
    if (!unloaded) remember(0); // a reload keeps the id: its pagehide DELETE may not have arrived
    session = null;
    tracker = null;
    stopTimers();
    viewer.removeOverlay(OVERLAY);
    overlayPixels = null;
    shownStep = -1;
    show("ended", message);
  };

  const attach = (s: LiveStatus) => {
    session = s;
    lastId = s.id;
    remember(s.id);
    tracker = new DraftTracker(store, store.unsavedStrokes.length > 0);
    sentRegion = s.region;
    update(s);
    beatTimer = window.setInterval(() => void beat(), HEARTBEAT_MS);
    void beat();
    poll();
  };

  const update = (s: LiveStatus) => {
    if (!session || s.id !== session.id) return;
    session = s;
    if (!isActive(s)) {
      ended(stopMessage(s.stop_reason, s.error));
      return;
    }
    show(s.state, statusLine(s));
    line.dataset.step = String(s.step);
    if (s.overlay_url && s.overlay_step !== shownStep) void fetchOverlay(s);
  };

  // --- heartbeat + draft -------------------------------------------------------------------------
  const beat = async (): Promise<void> => {
    if (!session || !tracker || sending || disposed) return;
    const wait = gate.wait(Date.now());
    if (wait > 0) {
      window.clearTimeout(soonTimer);
      soonTimer = window.setTimeout(() => void beat(), wait);
      return;
    }
    sending = true;
    const sid = session.id;
    try {
      const snap = tracker.changed ? tracker.take() : null;
      const body: Record<string, unknown> = {};
      if (snap) {
        // the masks exactly as a save sends them (AnnotationStore.payload)
        const p = await store.payload(store.version);
        body.classes_png = p.classes_png;
        if (p.instances_png) body.instances_png = p.instances_png;
      }
      gate.sent(Date.now());
      const resp = await send("PUT", `${sid}/draft/`, body);
      if (!session || session.id !== sid) return;
      if (resp.ok) {
        if (snap) tracker?.confirm(snap);
        update((await resp.json()) as LiveStatus);
      } else if (resp.status === 429) {
        gate.throttled(Date.now(), resp.headers.get("Retry-After"));
        soonTimer = window.setTimeout(() => void beat(), gate.wait(Date.now()));
      } else if (resp.status === 409 || resp.status === 404) {
        const err = await errorFrom(resp);
        const reason = typeof err.body.stop_reason === "string" ? err.body.stop_reason : "";
        ended(reason ? stopMessage(reason) : `Live stopped: ${err.detail}`);
      } else {
        const err = await errorFrom(resp);
        line.textContent = `could not send the draft: ${err.detail}`;
      }
    } catch (err) {
      line.textContent = `could not reach the server: ${messageOf(err)}`; // the next heartbeat tries again
    } finally {
      sending = false;
    }
  };

  /** A request with the API's headers (CSRF); the caller reads the Response (status, Retry-After). */
  const send = (method: string, path: string, body?: unknown, keepalive = false): Promise<Response> =>
    fetch(`/api/v1${base}${path}`, {
      method,
      credentials: "same-origin",
      keepalive,
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken") },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const unlisten = store.listen(() => {
    if (!session || !tracker?.changed) return;
    window.clearTimeout(soonTimer);
    soonTimer = window.setTimeout(() => void beat(), DRAFT_SOON_MS);
  });

  // --- status + overlay --------------------------------------------------------------------------
  const poll = () => {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(async () => {
      const s = session;
      if (!s || disposed) return;
      try {
        update(await api.get<LiveStatus>(`${base}${s.id}/`));
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return ended("Live stopped: the session is gone");
        line.textContent = `could not read the live status: ${messageOf(err)}`;
      }
      if (session) poll();
    }, POLL_MS);
  };

  const fetchOverlay = async (s: LiveStatus) => {
    if (fetchingOverlay) return;
    fetchingOverlay = true;
    try {
      const resp = await fetch(s.overlay_url!, { credentials: "same-origin" });
      if (!resp.ok || !session || session.id !== s.id) return;
      const step = Number(resp.headers.get("X-Live-Step") ?? s.overlay_step);
      const [x, y, w, hh] = (resp.headers.get("X-Live-Region") ?? "").split(",").map(Number);
      const r = [x, y, w, hh].every((v) => isFinite(v)) && w > 0 && hh > 0
        ? { x, y, w, h: hh }
        : { x: s.overlay_region.x ?? 0, y: s.overlay_region.y ?? 0, w: s.overlay_region.width ?? 0, h: s.overlay_region.height ?? 0 };
      const bmp = await createImageBitmap(await resp.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
      if (!session || session.id !== s.id) return;
      const cv = document.createElement("canvas");
      cv.width = bmp.width;
      cv.height = bmp.height;
      const cx = cv.getContext("2d", { willReadFrequently: true })!;
      cx.drawImage(bmp, 0, 0);
      overlayPixels = { data: cx.getImageData(0, 0, bmp.width, bmp.height).data, width: bmp.width, height: bmp.height, x: r.x, y: r.y };
      viewer.setImageOverlay(OVERLAY, cv, r, { opacity: 0.6 });
      shownStep = step;
      line.dataset.overlayStep = String(step);
    } catch (err) {
      line.textContent = `could not load the live overlay: ${messageOf(err)}`;
    } finally {
      fetchingOverlay = false;
    }
  };

  // --- the region follows pan and zoom -------------------------------------------------------------
  const prevViewChange = viewer.onViewChange;
  viewer.onViewChange = () => {
    prevViewChange?.();
    if (!session) return;
    window.clearTimeout(regionTimer);
    regionTimer = window.setTimeout(async () => {
      const s = session;
      const r = region();
      if (!s || sameRegion(r, sentRegion)) return;
      try {
        sentRegion = r;
        update(await api.patch<LiveStatus>(`${base}${s.id}/`, { region: r }));
      } catch (err) {
        sentRegion = null;
        if (err instanceof ApiError && err.status === 409) ended(stopMessage(typeof err.body.stop_reason === "string" ? err.body.stop_reason : ""));
      }
    }, REGION_SETTLE_MS);
  };

  // --- on / off ----------------------------------------------------------------------------------
  const start = async () => {
    toggle.disabled = true;
    show("starting", "starting…");
    try {
      attach(await api.post<LiveStatus>(base, { region: region() }));
    } catch (err) {
      show("off", "");
      showError(err, "Could not start live training");
    } finally {
      toggle.disabled = false;
    }
  };

  const stop = async () => {
    const s = session;
    if (!s) return;
    ended("Live off");
    try {
      await api.del(`${base}${s.id}/`);
    } catch (err) {
      showError(err, "Could not stop the live session (it stops by itself within seconds)");
    }
  };

  toggle.addEventListener("click", () => void (session ? stop() : start()));

  keep.addEventListener("click", async () => {
    if (!lastId) return;
    keep.disabled = true;
    try {
      const v = await api.post<ModelVersionRef>(`${base}${lastId}/keep/`, {});
      toast(`Kept the live network as model version v${v.number}.`, "ok", 6000);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) toast(`Nothing to keep yet: ${err.detail}`, "error", 8000);
      else showError(err, "Could not keep the live network");
    } finally {
      keep.disabled = !lastId;
    }
  });

  // closing the tab: stop at once instead of waiting for the heartbeat timeout
  const onPageHide = () => {
    if (!session || unloaded) return;
    unloaded = true;
    void send("DELETE", `${session.id}/`, undefined, true).catch(() => undefined);
  };
  window.addEventListener("pagehide", onPageHide);
  window.addEventListener("beforeunload", onPageHide);

  // --- correction clicks ---------------------------------------------------------------------------
  /** An Alt+click in progress: the tools must not see its pointer events. */
  let swallow = -1;
  const onDown = (e: PointerEvent) => {
    if (!e.altKey || e.button !== 0 || !session || !overlayPixels) return;
    e.stopImmediatePropagation();
    e.preventDefault();
    swallow = e.pointerId;
    const [fx, fy] = viewer.screenToImage(...viewer.eventPos(e));
    const runs = overlayObject(overlayPixels, Math.floor(fx), Math.floor(fy));
    if (!runs.length) {
      toast("No predicted object under the cursor.", "info");
      return;
    }
    const stroke = correctionStroke(runs, e.shiftKey ? { class: 1 } : editor.ink(), e.shiftKey);
    if (stroke) {
      store.add(stroke);
      editor.strokeDone();
    }
  };
  const onOther = (e: PointerEvent) => {
    if (e.pointerId !== swallow) return;
    e.stopImmediatePropagation();
    if (e.type !== "pointermove") swallow = -1;
  };
  viewer.canvas.addEventListener("pointerdown", onDown, { capture: true });
  for (const t of ["pointermove", "pointerup", "pointercancel"] as const) viewer.canvas.addEventListener(t, onOther, { capture: true });

  show("off", "");
  // a session this tab started that still runs (a reload whose pagehide DELETE did not arrive): take it up
  // again. Asked by id (200 with its state), not with GET .../live/, whose 404 for "none" every page load
  // would log as a console error.
  let remembered = 0;
  try {
    remembered = Number(sessionStorage.getItem(memoryKey) || 0);
  } catch {
    /* storage disabled */
  }
  if (remembered) {
    void api.get<LiveStatus>(`${base}${remembered}/`).then((s) => {
      if (!disposed && !session && isActive(s)) attach(s);
    }).catch(() => undefined);
  }

  return () => {
    disposed = true;
    unlisten();
    viewer.onViewChange = prevViewChange;
    window.removeEventListener("pagehide", onPageHide);
    window.removeEventListener("beforeunload", onPageHide);
    viewer.canvas.removeEventListener("pointerdown", onDown, { capture: true });
    for (const t of ["pointermove", "pointerup", "pointercancel"] as const) viewer.canvas.removeEventListener(t, onOther, { capture: true });
    void stop();
  };
}
