/**
 * Canvas image viewer: zoom to cursor, pan, fit; per-channel colour and contrast for 16-bit and
 * multichannel images; regions fetched as tiles at the zoom level in view (display.png region+level);
 * a label-mask layer; and generic named overlays (prediction, uncertainty, ...).
 *
 * screen = image * scale + offset (CSS pixels). The mask layer is resampled to screen resolution for the
 * visible region only, so a 10000x10000 image costs no more than a small one.
 */
import type { ImageInfo } from "./api";
import { channelColor } from "./palette";
import type { Masks, Rect } from "./raster";

/** A visible region in image pixels plus the downscale level (the server returns w/2^level x h/2^level). */
export interface Region {
  x: number;
  y: number;
  w: number;
  h: number;
  level: number;
}

/** Returns the URL of a PNG covering `region` (downscaled by 2^level): overlays and channels alike. */
export type RegionSource = (region: Region) => string;

export interface OverlayOptions {
  opacity?: number;
  visible?: boolean;
}

interface Overlay {
  name: string;
  source: RegionSource;
  opacity: number;
  visible: boolean;
  /** One image covering one region (e.g. the live network's overlay) instead of tiles from `source`. */
  image?: { img: CanvasImageSource; x: number; y: number; w: number; h: number };
}

export interface ChannelSetting {
  visible: boolean;
  /** "#rrggbb" tint. */
  color: string;
  min: number;
  max: number;
}

const TILE = 512; // tile edge in screen-resolution pixels of its level

/** URL of the server's 8-bit rendering of one channel of a region (API issue 3). */
export function displayUrl(imageId: number, channel: number, min: number, max: number, r: Region): string {
  const q = new URLSearchParams({
    channel: String(channel),
    min: String(Math.round(min)),
    max: String(Math.round(max)),
    region: `${r.x},${r.y},${r.w},${r.h}`,
    level: String(r.level),
  });
  return `/api/v1/images/${imageId}/display.png?${q}`;
}

/** Hex colour -> [r, g, b]. */
export function rgb(hex: string): [number, number, number] {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(hex);
  return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : [0, 255, 0];
}

interface Tile {
  img: HTMLImageElement;
  ready: boolean;
  failed: boolean;
}

export class Viewer {
  readonly canvas: HTMLCanvasElement;
  readonly ctx: CanvasRenderingContext2D;
  scale = 1;
  offsetX = 0;
  offsetY = 0;
  channels: ChannelSetting[];
  maskOpacity = 0.5;
  classColors: Map<number, [number, number, number]> = new Map();
  /** The background class (1) is not drawn (after "Accept prediction" it would cover the whole image). */
  hideBackground = false;
  /** The picked object (pick tool): drawn more opaque with a bright outline; 0 = none. */
  highlightInstance = 0;
  /** Called after the mask's look changed (hide background), so toggles elsewhere follow. */
  onMaskStyleChange: Array<() => void> = [];
  /** Extra drawing on top (brush cursor, polygon preview), in screen coordinates. */
  drawTop: ((ctx: CanvasRenderingContext2D) => void) | null = null;
  onViewChange: (() => void) | null = null;
  /** Called after a channel's colour, range or visibility changed. */
  onChannelsChange: (() => void) | null = null;
  onOverlaysChange: ((names: string[]) => void) | null = null;
  onError: ((message: string) => void) | null = null;

  private masks: Masks | null = null;
  private overlays = new Map<string, Overlay>();
  private tiles = new Map<string, Tile>();
  private frame = 0;
  private maskLayer: HTMLCanvasElement = document.createElement("canvas");
  private channelLayer: HTMLCanvasElement = document.createElement("canvas");
  private resizeObs: ResizeObserver;
  private failures = 0;
  private retries = new Map<string, number>();
  /** The user zoomed or panned: a resize keeps the view instead of fitting again. */
  private userMoved = false;

  constructor(readonly container: HTMLElement, readonly image: ImageInfo) {
    this.canvas = document.createElement("canvas");
    this.canvas.className = "viewer-canvas";
    this.canvas.setAttribute("data-testid", "annotation-canvas");
    this.canvas.style.touchAction = "none";
    container.append(this.canvas);
    this.ctx = this.canvas.getContext("2d")!;
    const ranges = image.display_range?.length ? image.display_range : [];
    const full = image.dtype === "uint8" ? 255 : image.dtype === "uint16" ? 65535 : 1;
    this.channels = Array.from({ length: image.channels }, (_, c) => ({
      visible: true,
      color: channelColor(c, image.channels, image.dtype), // the grid thumbnails use the same map
      min: ranges[c]?.[0] ?? 0,
      max: ranges[c]?.[1] ?? full,
    }));
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(container);
    this.resize();
    this.fit();
  }

  destroy(): void {
    this.resizeObs.disconnect();
    cancelAnimationFrame(this.frame);
    this.tiles.clear();
  }

  // --- geometry ----------------------------------------------------------------------------
  private resize(): void {
    const r = this.container.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.floor(r.width));
    const hgt = Math.max(1, Math.floor(r.height));
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(hgt * dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${hgt}px`;
    if (!this.userMoved) this.fit();
    this.requestRender();
  }

  get viewWidth(): number {
    return this.canvas.width / (window.devicePixelRatio || 1);
  }
  get viewHeight(): number {
    return this.canvas.height / (window.devicePixelRatio || 1);
  }

  /** Image pixel coordinates (continuous) of a point in canvas CSS pixels. */
  screenToImage(sx: number, sy: number): [number, number] {
    return [(sx - this.offsetX) / this.scale, (sy - this.offsetY) / this.scale];
  }
  imageToScreen(ix: number, iy: number): [number, number] {
    return [ix * this.scale + this.offsetX, iy * this.scale + this.offsetY];
  }
  /** Canvas CSS coordinates of a pointer event. */
  eventPos(e: { clientX: number; clientY: number }): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  fit(): void {
    const s = Math.min(this.viewWidth / this.image.width, this.viewHeight / this.image.height) * 0.98;
    this.scale = s > 0 && isFinite(s) ? s : 1;
    this.offsetX = (this.viewWidth - this.image.width * this.scale) / 2;
    this.offsetY = (this.viewHeight - this.image.height * this.scale) / 2;
    this.userMoved = false;
    this.changed();
  }

  /** Zoom by `factor` keeping the image point under (sx, sy) fixed. */
  zoomAt(sx: number, sy: number, factor: number): void {
    const [ix, iy] = this.screenToImage(sx, sy);
    this.scale = Math.min(64, Math.max(1 / 256, this.scale * factor));
    this.offsetX = sx - ix * this.scale;
    this.offsetY = sy - iy * this.scale;
    this.userMoved = true;
    this.changed();
  }

  panBy(dx: number, dy: number): void {
    this.offsetX += dx;
    this.offsetY += dy;
    this.userMoved = true;
    this.changed();
  }

  /** Set an exact view (tests, restoring a view). */
  setView(scale: number, offsetX: number, offsetY: number): void {
    Object.assign(this, { scale, offsetX, offsetY });
    this.userMoved = true;
    this.changed();
  }

  private changed(): void {
    this.onViewChange?.();
    this.requestRender();
  }

  /** Downscale level for the current zoom: the coarsest power of two that keeps >= 1 image px per screen px. */
  get level(): number {
    const dpr = window.devicePixelRatio || 1;
    const l = Math.floor(Math.log2(1 / (this.scale * dpr)));
    return Math.max(0, Math.min(l, 12));
  }

  // --- channels, mask, overlays ------------------------------------------------------------
  setChannel(c: number, patch: Partial<ChannelSetting>): void {
    Object.assign(this.channels[c], patch);
    this.onChannelsChange?.();
    this.requestRender();
  }

  /** Show this label mask (it is read on every render; call maskChanged after editing it in place). */
  setMasks(m: Masks | null): void {
    this.masks = m;
    this.requestRender();
  }
  maskChanged(_rect?: Rect): void {
    this.requestRender();
  }
  setHideBackground(on: boolean): void {
    if (this.hideBackground === on) return;
    this.hideBackground = on;
    this.onMaskStyleChange.forEach((fn) => fn());
    this.requestRender();
  }
  setHighlightInstance(id: number): void {
    if (this.highlightInstance === id) return;
    this.highlightInstance = id;
    this.requestRender();
  }

  /**
   * Add or update a named overlay drawn above the image and below the labels. `source(region)` returns
   * the URL of a PNG for that region (RGBA, or grey used as is). Passing `source=null` keeps the
   * current source and only changes options.
   */
  setOverlay(name: string, source: RegionSource | null, opts: OverlayOptions = {}): void {
    const old = this.overlays.get(name);
    if (!old && !source) return;
    const o: Overlay = {
      name,
      source: source ?? old!.source,
      opacity: opts.opacity ?? old?.opacity ?? 0.5,
      visible: opts.visible ?? old?.visible ?? true,
      image: source ? undefined : old!.image, // options only: an image overlay keeps its image
    };
    if (old && source && old.source !== source) this.dropTiles(`ov:${name}|`);
    this.overlays.set(name, o);
    this.onOverlaysChange?.(this.overlayNames());
    this.requestRender();
  }
  /**
   * Add or update a named overlay that is one image covering the image rectangle (x, y, w, h) (a region
   * PNG the page fetched itself, e.g. the live network's prediction); same controls as tiled overlays.
   */
  setImageOverlay(name: string, img: CanvasImageSource, rect: { x: number; y: number; w: number; h: number }, opts: OverlayOptions = {}): void {
    const old = this.overlays.get(name);
    this.overlays.set(name, {
      name,
      source: old?.source ?? (() => ""),
      opacity: opts.opacity ?? old?.opacity ?? 0.5,
      visible: opts.visible ?? old?.visible ?? true,
      image: { img, ...rect },
    });
    if (!old) this.onOverlaysChange?.(this.overlayNames());
    this.requestRender();
  }
  removeOverlay(name: string): void {
    if (this.overlays.delete(name)) {
      this.dropTiles(`ov:${name}|`);
      this.onOverlaysChange?.(this.overlayNames());
      this.requestRender();
    }
  }
  /** Reload an overlay's tiles (its data changed on the server). */
  refreshOverlay(name: string): void {
    this.dropTiles(`ov:${name}|`);
    this.requestRender();
  }
  overlayNames(): string[] {
    return [...this.overlays.keys()];
  }
  overlay(name: string): Readonly<Overlay> | undefined {
    return this.overlays.get(name);
  }

  private dropTiles(prefix: string): void {
    for (const k of [...this.tiles.keys()]) if (k.startsWith(prefix)) this.tiles.delete(k);
  }

  // --- rendering ---------------------------------------------------------------------------
  requestRender(): void {
    if (this.frame) return;
    // a frame is pending: what is on screen is not the current view yet (tests wait on data-loaded)
    this.loaded = false;
    this.canvas.dataset.loaded = "false";
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Tiles of `level` intersecting the visible image rectangle. */
  private visibleTiles(level: number): Region[] {
    const span = TILE * 2 ** level;
    const [ax, ay] = this.screenToImage(0, 0);
    const [bx, by] = this.screenToImage(this.viewWidth, this.viewHeight);
    const out: Region[] = [];
    const tx0 = Math.max(0, Math.floor(ax / span));
    const ty0 = Math.max(0, Math.floor(ay / span));
    const tx1 = Math.min(Math.ceil(this.image.width / span), Math.ceil(bx / span));
    const ty1 = Math.min(Math.ceil(this.image.height / span), Math.ceil(by / span));
    for (let ty = ty0; ty < ty1; ty++)
      for (let tx = tx0; tx < tx1; tx++) {
        const x = tx * span;
        const y = ty * span;
        out.push({ x, y, w: Math.min(span, this.image.width - x), h: Math.min(span, this.image.height - y), level });
      }
    return out;
  }

  private tile(key: string, url: string): Tile {
    let t = this.tiles.get(key);
    if (!t) {
      const img = new Image();
      t = { img, ready: false, failed: false };
      const tt = t;
      img.onload = () => {
        tt.ready = true;
        this.requestRender();
      };
      img.onerror = () => {
        // retry a few times (a busy server, a network blip), then give up on this tile and say so
        const tries = (this.retries.get(key) ?? 0) + 1;
        this.retries.set(key, tries);
        if (tries <= 3) {
          setTimeout(() => {
            if (this.tiles.get(key) === tt) this.tiles.delete(key);
            this.requestRender();
          }, 1000 * tries);
          return;
        }
        tt.failed = true;
        this.requestRender();
        if (this.failures++ % 20 === 0) this.onError?.("Could not load part of the image from the server.");
      };
      img.src = url;
      this.tiles.set(key, t);
      if (this.tiles.size > 600) this.tiles.delete(this.tiles.keys().next().value!);
    }
    return t;
  }

  /** Draw one layer (an image channel or an overlay) from tiles into ctx at the current view. */
  private drawLayer(ctx: CanvasRenderingContext2D, prefix: string, source: RegionSource): boolean {
    let complete = true;
    const level = this.level;
    // a coarse preview of the whole image first (cheap), then the tiles at the level in view
    const coarse = Math.max(level, Math.ceil(Math.log2(Math.max(this.image.width, this.image.height) / TILE)));
    const levels = coarse > level ? [coarse, level] : [level];
    for (const l of levels) {
      for (const r of this.visibleTiles(l)) {
        const key = `${prefix}|${l}|${r.x}|${r.y}`;
        const t = this.tile(key, source(r));
        if (!t.ready) {
          if (l === level && !t.failed) complete = false;
          continue;
        }
        const [sx, sy] = this.imageToScreen(r.x, r.y);
        ctx.drawImage(t.img, sx, sy, r.w * this.scale, r.h * this.scale);
      }
    }
    return complete;
  }

  /** True when every visible tile of every layer at the current level is loaded (tests wait on it). */
  loaded = false;

  render(): void {
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    const W = this.viewWidth, H = this.viewHeight;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = this.scale < 1;
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, W, H);
    const [ix0, iy0] = this.imageToScreen(0, 0);
    const iw = this.image.width * this.scale, ih = this.image.height * this.scale;
    ctx.fillStyle = "#000"; // channels add up from black inside the image
    ctx.fillRect(ix0, iy0, iw, ih);
    let complete = true;

    // channels: each tinted with its colour and added ("lighter")
    const layer = this.channelLayer;
    if (layer.width !== this.canvas.width || layer.height !== this.canvas.height) {
      layer.width = this.canvas.width;
      layer.height = this.canvas.height;
    }
    const lctx = layer.getContext("2d")!;
    this.channels.forEach((ch, c) => {
      if (!ch.visible) return;
      lctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      lctx.globalCompositeOperation = "source-over";
      lctx.imageSmoothingEnabled = this.scale < 1;
      lctx.clearRect(0, 0, W, H);
      lctx.fillStyle = "#000"; // opaque black under the tiles, so tinting never colours missing tiles
      lctx.fillRect(ix0, iy0, iw, ih);
      const prefix = `ch:${c}:${Math.round(ch.min)}:${Math.round(ch.max)}`;
      complete = this.drawLayer(lctx, prefix, (r) => displayUrl(this.image.id, c, ch.min, ch.max, r)) && complete;
      if (ch.color.toLowerCase() !== "#ffffff") {
        lctx.globalCompositeOperation = "multiply";
        lctx.fillStyle = ch.color;
        lctx.fillRect(ix0, iy0, iw, ih);
      }
      ctx.save();
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalCompositeOperation = "lighter";
      ctx.drawImage(layer, 0, 0);
      ctx.restore();
    });
    // the image area's outside stays dark after "lighter"/"multiply"
    ctx.globalCompositeOperation = "source-over";

    for (const o of this.overlays.values()) {
      if (!o.visible || o.opacity <= 0) continue;
      ctx.globalAlpha = o.opacity;
      if (o.image) {
        const [sx, sy] = this.imageToScreen(o.image.x, o.image.y);
        const smooth = ctx.imageSmoothingEnabled;
        ctx.imageSmoothingEnabled = false; // image pixels stay sharp squares when zoomed in
        ctx.drawImage(o.image.img, sx, sy, o.image.w * this.scale, o.image.h * this.scale);
        ctx.imageSmoothingEnabled = smooth;
      } else complete = this.drawLayer(ctx, `ov:${o.name}`, o.source) && complete;
      ctx.globalAlpha = 1;
    }

    if (this.masks && this.maskOpacity > 0) this.drawMask(ctx);
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = 1;
    const [x0, y0] = this.imageToScreen(0, 0);
    ctx.strokeRect(x0 - 0.5, y0 - 0.5, this.image.width * this.scale + 1, this.image.height * this.scale + 1);
    this.drawTop?.(ctx);
    this.loaded = complete;
    this.canvas.dataset.loaded = complete ? "true" : "false";
  }

  /** Resample the visible part of the class mask to device pixels (nearest) and draw it. */
  private drawMask(ctx: CanvasRenderingContext2D): void {
    const m = this.masks!;
    const dpr = window.devicePixelRatio || 1;
    const [ax, ay] = this.imageToScreen(0, 0);
    const [bx, by] = this.imageToScreen(m.width, m.height);
    const sx0 = Math.max(0, Math.floor(ax * dpr)), sy0 = Math.max(0, Math.floor(ay * dpr));
    const sx1 = Math.min(this.canvas.width, Math.ceil(bx * dpr)), sy1 = Math.min(this.canvas.height, Math.ceil(by * dpr));
    const w = sx1 - sx0, hgt = sy1 - sy0;
    if (w <= 0 || hgt <= 0) return;
    const layer = this.maskLayer;
    if (layer.width !== w || layer.height !== hgt) {
      layer.width = w;
      layer.height = hgt;
    }
    const lctx = layer.getContext("2d")!;
    const img = lctx.createImageData(w, hgt);
    const out = new Uint32Array(img.data.buffer);
    const lut = new Uint32Array(256);
    const alpha = Math.round(255 * Math.min(1, this.maskOpacity));
    for (const [k, [r, g, b]] of this.classColors) lut[k] = (alpha << 24) | (b << 16) | (g << 8) | r; // little-endian RGBA
    if (this.hideBackground) lut[1] = 0;
    const inv = 1 / (this.scale * dpr);
    const offX = this.offsetX * dpr, offY = this.offsetY * dpr;
    const cols = new Int32Array(w);
    for (let x = 0; x < w; x++) cols[x] = Math.min(m.width - 1, Math.floor((sx0 + x + 0.5 - offX) * inv));
    const cls = m.classes;
    const inst = m.instances;
    // the instance id under each device pixel, for the outlines (drawn at every zoom)
    const ids = new Uint32Array(w * hgt);
    let anyInstance = false;
    for (let y = 0; y < hgt; y++) {
      const iy = Math.min(m.height - 1, Math.floor((sy0 + y + 0.5 - offY) * inv));
      const row = iy * m.width;
      const o = y * w;
      for (let x = 0; x < w; x++) {
        const v = cls[row + cols[x]];
        if (v) out[o + x] = lut[v];
        const id = inst[row + cols[x]];
        if (id) {
          ids[o + x] = id;
          anyInstance = true;
        }
      }
    }
    if (anyInstance) drawInstanceEdges(out, ids, w, hgt, this.highlightInstance, Math.round(255 * Math.min(1, this.maskOpacity + 0.35)));
    lctx.putImageData(img, 0, 0);
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(layer, sx0, sy0);
    ctx.restore();
  }

  /** A low-resolution whole-image fetch of one channel at the full value range -> 256-bin histogram. */
  async histogram(c: number, fullMin: number, fullMax: number): Promise<Uint32Array> {
    const level = Math.max(0, Math.ceil(Math.log2(Math.max(this.image.width, this.image.height) / 256)));
    const url = displayUrl(this.image.id, c, fullMin, fullMax, { x: 0, y: 0, w: this.image.width, h: this.image.height, level });
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`histogram: HTTP ${resp.status}`);
    const bmp = await createImageBitmap(await resp.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const cv = document.createElement("canvas");
    cv.width = bmp.width;
    cv.height = bmp.height;
    const cx = cv.getContext("2d", { willReadFrequently: true })!;
    cx.drawImage(bmp, 0, 0);
    const data = cx.getImageData(0, 0, bmp.width, bmp.height).data;
    const hist = new Uint32Array(256);
    for (let i = 0; i < data.length; i += 4) hist[data[i]]++;
    return hist;
  }

  /**
   * Auto contrast of a channel: the 0.5 / 99.5 percentiles of its histogram, refined once on the
   * narrowed range so a 16-bit channel gets a range accurate to ~1/65000 of its span.
   */
  async autoRange(c: number): Promise<[number, number]> {
    const full = this.image.dtype === "uint16" ? 65535 : this.image.dtype === "uint8" ? 255 : Math.max(1, this.channels[c].max);
    let lo = 0, hi = full;
    for (let pass = 0; pass < 2; pass++) {
      const hist = await this.histogram(c, lo, hi);
      const [pl, ph] = percentileBins(hist, 0.005, 0.995);
      const step = (hi - lo) / 255;
      const nlo = lo + Math.max(0, pl - 1) * step;
      const nhi = lo + Math.min(255, ph + 1) * step;
      lo = nlo;
      hi = Math.max(nhi, nlo + 1);
      if (step <= 1) break;
    }
    this.setChannel(c, { min: Math.floor(lo), max: Math.ceil(hi) });
    return [Math.floor(lo), Math.ceil(hi)];
  }
}

/** Outline colour of objects (opaque white) and of the picked object (yellow), as little-endian RGBA. */
export const EDGE_RGBA = 0xffffffff;
export const PICKED_EDGE_RGBA = 0xff00d7ff;

/**
 * Instance outlines in screen space, so they show at every zoom: a device pixel whose object id differs
 * from a 4-neighbour's is an edge (object against background or against another object). The picked
 * object's pixels are drawn more opaque (`pickedAlpha`) and its edge yellow and two pixels wide.
 * `out` is the RGBA mask layer (little-endian Uint32), `ids` the object id under each of its pixels.
 */
export function drawInstanceEdges(out: Uint32Array, ids: Uint32Array, w: number, hgt: number, picked = 0, pickedAlpha = 255): void {
  const edge = (i: number, x: number, y: number): boolean => {
    const id = ids[i];
    return (x > 0 && ids[i - 1] !== id) || (x < w - 1 && ids[i + 1] !== id) || (y > 0 && ids[i - w] !== id) || (y < hgt - 1 && ids[i + w] !== id);
  };
  for (let y = 0; y < hgt; y++)
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const id = ids[i];
      if (!id) {
        // the ring just outside the picked object thickens its outline
        if (picked && ((x > 0 && ids[i - 1] === picked) || (x < w - 1 && ids[i + 1] === picked) || (y > 0 && ids[i - w] === picked) || (y < hgt - 1 && ids[i + w] === picked))) out[i] = PICKED_EDGE_RGBA;
        continue;
      }
      if (edge(i, x, y)) out[i] = id === picked ? PICKED_EDGE_RGBA : EDGE_RGBA;
      else if (id === picked) out[i] = ((pickedAlpha << 24) | (out[i] & 0xffffff)) >>> 0;
    }
}

/** Bins holding the `lo` and `hi` quantiles of a histogram. */
export function percentileBins(hist: ArrayLike<number>, lo: number, hi: number): [number, number] {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  let acc = 0, a = 0, b = hist.length - 1, gotA = false;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (!gotA && acc > lo * total) {
      a = i;
      gotA = true;
    }
    if (acc >= hi * total) {
      b = i;
      break;
    }
  }
  return [a, Math.max(a, b)];
}
