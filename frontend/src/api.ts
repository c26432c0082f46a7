/**
 * Fetch wrapper for the LabSeg REST API (/api/v1/).
 *
 * Session auth: Django's `csrftoken` cookie is sent back as the X-CSRFToken header on unsafe methods.
 * Every non-2xx answer becomes a thrown {@link ApiError} carrying the status and the server's
 * `detail` message (the API always answers errors as JSON {"detail", "code"[, "errors"]}).
 */

export const API = "/api/v1";

/** An HTTP error from the API (status 0: the network is down or the server unreachable). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(status ? `${detail} (HTTP ${status})` : detail);
    this.name = "ApiError";
  }
  get code(): string | undefined {
    return typeof this.body.code === "string" ? this.body.code : undefined;
  }
}

/** The value of a cookie, or "" when absent. */
export function cookie(name: string): string {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

function headers(method: string, json: boolean): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) h["X-CSRFToken"] = cookie("csrftoken");
  return h;
}

/** Turn a failed Response into an ApiError with the best message available. */
export async function errorFrom(resp: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await resp.json()) as Record<string, unknown>;
  } catch {
    /* not JSON (e.g. a proxy error page) */
  }
  let detail = typeof body.detail === "string" ? body.detail : resp.statusText || "Request failed";
  if (body.errors && typeof body.errors === "object") {
    const parts = Object.entries(body.errors as Record<string, unknown>).map(([k, v]) => `${k}: ${String(v)}`);
    if (parts.length) detail += ` (${parts.join("; ")})`;
  }
  if (resp.status === 401 || resp.status === 403) {
    if (resp.status === 401 || /credentials were not provided/i.test(detail)) detail = "You are logged out: please log in again.";
  }
  return new ApiError(resp.status, detail, body);
}

/** Any request; `path` is relative to /api/v1 unless it starts with "/api" or "http". */
export async function request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const url = path.startsWith("/api") || path.startsWith("http") ? path : API + path;
  const isForm = body instanceof FormData;
  let resp: Response;
  try {
    resp = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: headers(method, body !== undefined && !isForm),
      body: body === undefined ? undefined : isForm ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Network error: the server cannot be reached.");
  }
  if (!resp.ok) throw await errorFrom(resp);
  if (resp.status === 204) return undefined as T;
  const type = resp.headers.get("Content-Type") || "";
  return (type.includes("json") ? await resp.json() : await resp.text()) as T;
}

export const api = {
  get: <T = unknown>(path: string) => request<T>("GET", path),
  post: <T = unknown>(path: string, body?: unknown) => request<T>("POST", path, body ?? {}),
  put: <T = unknown>(path: string, body: unknown) => request<T>("PUT", path, body),
  patch: <T = unknown>(path: string, body: unknown) => request<T>("PATCH", path, body),
  del: <T = unknown>(path: string) => request<T>("DELETE", path),
};

/** A DRF page; lists may also come back as plain arrays. */
export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

/** All items of a (possibly paginated) list endpoint. */
export async function getAll<T>(path: string): Promise<T[]> {
  const out: T[] = [];
  let next: string | null = path;
  while (next) {
    const page: Page<T> | T[] = await api.get<Page<T> | T[]>(next);
    if (Array.isArray(page)) return page;
    out.push(...page.results);
    next = page.next ? new URL(page.next, location.origin).pathname + new URL(page.next, location.origin).search : null;
  }
  return out;
}

/**
 * POST a multipart form with upload progress (fetch has none): resolves with the status and JSON body
 * for every HTTP answer (the caller inspects 201/207/400), rejects with ApiError(0) on network failure.
 */
export function uploadForm(
  path: string,
  form: FormData,
  onProgress: (loaded: number, total: number) => void,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path.startsWith("/api") ? path : API + path);
    xhr.setRequestHeader("X-CSRFToken", cookie("csrftoken"));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onerror = () => reject(new ApiError(0, "Network error: the upload did not reach the server."));
    xhr.onload = () => {
      let body: unknown;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { detail: xhr.statusText || "Unexpected answer" };
      }
      resolve({ status: xhr.status, body });
    };
    xhr.send(form);
  });
}

// --- API types (issue 3) -------------------------------------------------------------------
export interface LabelClass {
  index: number;
  name: string;
  color: string;
}
export interface Project {
  id: number;
  name: string;
  description?: string;
  classes: LabelClass[];
  my_role?: string | null;
  owner?: string;
  channels?: string[];
  /** The typical object's width in px (diameter of a round one); null: estimated from what is painted. */
  object_diameter?: number | null;
  image_count?: number;
}
export interface ImageInfo {
  id: number;
  project: number;
  original_filename: string;
  width: number;
  height: number;
  channels: number;
  dtype: string;
  display_range: [number, number][];
  split: string;
  thumbnail_url?: string | null;
  display_url?: string;
  has_annotation?: boolean;
  labelled_pixels?: number;
  annotation_version?: number;
}
export interface AnnotationData {
  version: number;
  classes_png: string | null;
  instances_png: string | null;
  strokes: unknown[];
  updated_by?: string | null;
  updated_at?: string | null;
}
export interface Member {
  user_id?: number;
  username: string;
  role: string;
}
