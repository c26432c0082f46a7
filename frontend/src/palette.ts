/**
 * The colours the app picks by itself: how image channels are tinted (the viewer, and the same map in
 * `labseg/ml/io.py` CHANNEL_COLORS for the grid thumbnails and display.png composites) and the default
 * label-class colours (the same list as `apps/annotate/services.py` DEFAULT_CLASS_COLORS), chosen far
 * from every channel colour so a label never looks like a stained structure. A Python test
 * (tests/annotate/test_palette.py) checks that both sides list the same colours.
 */

/** Channel k of a multichannel image (green/magenta first: readable for red-green colour blindness). */
export const CHANNEL_COLORS = ["#00ff00", "#ff00ff", "#00ffff", "#ffff00", "#ff0000", "#ffffff"];
/** An 8-bit three-channel image is a photo: red, green, blue. */
export const RGB_COLORS = ["#ff0000", "#00ff00", "#0000ff"];
/** Default colours of object classes 2, 3, …: tertiary hues, far from every channel colour and from each other. */
export const CLASS_COLORS = ["#ff8000", "#0080ff", "#80ff00", "#8000ff", "#00ff80", "#ff0080", "#ffb080", "#008080"];
/** The background class (1): a quiet grey-blue, hidden with "hide background". */
export const BACKGROUND_COLOR = "#708090";

/** The default tint of channel `c`: white for a single channel, RGB for 8-bit 3-channel photos, else CHANNEL_COLORS. */
export function channelColor(c: number, channels: number, dtype: string): string {
  if (channels === 1) return "#ffffff";
  if (channels === 3 && dtype === "uint8") return RGB_COLORS[c];
  return CHANNEL_COLORS[c % CHANNEL_COLORS.length];
}

/** Default colour of the i-th object class (i = 0 for class index 2). */
export function classColor(i: number): string {
  return CLASS_COLORS[((i % CLASS_COLORS.length) + CLASS_COLORS.length) % CLASS_COLORS.length];
}

/** Euclidean distance of two "#rrggbb" colours in RGB (0 … 441). */
export function colorDistance(a: string, b: string): number {
  const p = (x: string) => [1, 3, 5].map((i) => parseInt(x.slice(i, i + 2), 16));
  const [u, v] = [p(a), p(b)];
  return Math.hypot(u[0] - v[0], u[1] - v[1], u[2] - v[2]);
}
