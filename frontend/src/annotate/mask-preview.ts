/**
 * Class masks drawn small or large outside the viewer: the conflict dialog's "theirs | mine" comparison
 * (pixels that differ between the two bright, the rest dimmed) and the History panel's thumbnails.
 * The pixel work is pure (no DOM) so it is tested without a browser.
 */
import { h } from "../ui";

export type Rgb = readonly [number, number, number];

/** Unlabelled pixels. */
export const UNLABELLED: Rgb = [20, 20, 20];
/** A pixel unlabelled in this version but labelled in the other. */
export const REMOVED: Rgb = [255, 255, 255];
/** How much pixels that are the same in both versions are dimmed, so the differences stand out. */
export const SAME_DIM = 0.3;

/** Size of a preview fitting `max` on its longer side (small masks are enlarged, large ones shrunk). */
export function previewSize(w: number, hgt: number, max: number): [number, number] {
  const s = max / Math.max(w, hgt, 1);
  return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(hgt * s))];
}

export interface MaskPreview {
  /** RGBA, cw x ch. */
  rgba: Uint8ClampedArray;
  /** Pixels (of the full-size masks) whose class differs from `other` (0 without `other`). */
  differing: number;
}

/**
 * Render `classes` (w x hgt) at cw x ch, nearest neighbour. With `other` (the version compared with),
 * every preview pixel covering at least one differing mask pixel is drawn at full colour (white where
 * this version is unlabelled), and the pixels that are the same in both are dimmed: a difference of one
 * mask pixel stays visible however far the preview is shrunk.
 */
export function renderMaskPreview(classes: Uint8Array, w: number, hgt: number, cw: number, ch: number,
  colors: ReadonlyMap<number, Rgb>, other?: Uint8Array): MaskPreview {
  const rgba = new Uint8ClampedArray(cw * ch * 4);
  const flag = new Uint8Array(cw * ch);
  const cols = new Int32Array(cw);
  for (let x = 0; x < cw; x++) cols[x] = Math.min(w - 1, Math.floor((x * w) / cw));
  let differing = 0;
  if (other) {
    for (let i = 0; i < classes.length; i++) {
      if (classes[i] === other[i]) continue;
      differing++;
      const x = i % w, y = (i - x) / w; // shrinking: the preview pixel this mask pixel falls in
      flag[Math.min(ch - 1, Math.floor((y * ch) / hgt)) * cw + Math.min(cw - 1, Math.floor((x * cw) / w))] = 1;
    }
  }
  for (let y = 0; y < ch; y++) {
    const row = Math.min(hgt - 1, Math.floor((y * hgt) / ch)) * w;
    for (let x = 0; x < cw; x++) {
      const src = row + cols[x];
      const v = classes[src];
      const o = y * cw + x;
      const differs = !!other && (flag[o] === 1 || classes[src] !== other[src]); // enlarging: the sampled pixel
      let c: Rgb = v ? colors.get(v) ?? [128, 128, 128] : UNLABELLED;
      if (other && differs && !v) c = REMOVED;
      const k = other && !differs ? SAME_DIM : 1;
      rgba[o * 4] = c[0] * k;
      rgba[o * 4 + 1] = c[1] * k;
      rgba[o * 4 + 2] = c[2] * k;
      rgba[o * 4 + 3] = 255;
    }
  }
  return { rgba, differing };
}

/** A canvas showing `classes` at most `max` pixels on its longer side (see {@link renderMaskPreview}). */
export function maskCanvas(classes: Uint8Array, w: number, hgt: number, max: number, colors: ReadonlyMap<number, Rgb>,
  opts: { other?: Uint8Array; testid?: string; className?: string } = {}): { canvas: HTMLCanvasElement; differing: number } {
  const [cw, ch] = previewSize(w, hgt, max);
  const canvas = h("canvas", { width: cw, height: ch, class: opts.className ?? "mask-preview", "data-testid": opts.testid ?? null });
  const p = renderMaskPreview(classes, w, hgt, cw, ch, colors, opts.other);
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(cw, ch);
  img.data.set(p.rgba);
  ctx.putImageData(img, 0, 0);
  canvas.dataset.differing = String(p.differing);
  return { canvas, differing: p.differing };
}
