/**
 * A tiny PNG codec for greyscale masks: 8-bit (class indices) and 16-bit (instance ids).
 * canvas.toBlob cannot write 16-bit grey and canvas decoding loses it, so both directions are done
 * here, with the platform's zlib (CompressionStream / DecompressionStream "deflate" = zlib format).
 */

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

let crcTable: Uint32Array | null = null;
function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

async function pump(data: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const blob = new Blob([data as BlobPart]);
  const out = await new Response(blob.stream().pipeThrough(stream)).arrayBuffer();
  return new Uint8Array(out);
}

export const zlibDeflate = (d: Uint8Array) => pump(d, new CompressionStream("deflate"));
export const zlibInflate = (d: Uint8Array) => pump(d, new DecompressionStream("deflate"));

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

/** Encode a greyscale image (Uint8Array -> 8-bit, Uint16Array -> 16-bit big-endian) as PNG bytes. */
export async function encodeGreyPng(pixels: Uint8Array | Uint16Array, width: number, height: number): Promise<Uint8Array> {
  const bpp = pixels instanceof Uint16Array ? 2 : 1;
  const stride = width * bpp + 1;
  const raw = new Uint8Array(stride * height); // filter byte 0 (None) per row
  for (let y = 0; y < height; y++) {
    const o = y * stride + 1;
    if (bpp === 1) raw.set((pixels as Uint8Array).subarray(y * width, (y + 1) * width), o);
    else for (let x = 0; x < width; x++) {
      const v = pixels[y * width + x];
      raw[o + 2 * x] = v >> 8;
      raw[o + 2 * x + 1] = v & 0xff;
    }
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = bpp * 8; // bit depth
  ihdr[9] = 0; // colour type: greyscale
  const idat = await zlibDeflate(raw);
  const parts = [new Uint8Array(SIGNATURE), chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export interface DecodedPng {
  width: number;
  height: number;
  bitDepth: number;
  /** One value per pixel (grey, or the first sample for other colour types). */
  data: Uint8Array | Uint16Array;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decode a non-interlaced PNG with 8- or 16-bit samples; returns the first sample of each pixel. */
export async function decodePng(bytes: Uint8Array): Promise<DecodedPng> {
  for (let i = 0; i < 8; i++) if (bytes[i] !== SIGNATURE[i]) throw new Error("not a PNG");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 8, width = 0, height = 0, depth = 8, colour = 0, interlace = 0;
  const idat: Uint8Array[] = [];
  while (off < bytes.length) {
    const len = dv.getUint32(off);
    const type = String.fromCharCode(...bytes.subarray(off + 4, off + 8));
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = dv.getUint32(off + 8);
      height = dv.getUint32(off + 12);
      depth = data[8];
      colour = data[9];
      interlace = data[12];
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  if (interlace) throw new Error("interlaced PNG not supported");
  if (depth !== 8 && depth !== 16) throw new Error(`PNG bit depth ${depth} not supported`);
  const samples = { 0: 1, 2: 3, 4: 2, 6: 4 }[colour as 0 | 2 | 4 | 6];
  if (!samples) throw new Error(`PNG colour type ${colour} not supported`);
  const joined = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of idat) {
    joined.set(c, o);
    o += c.length;
  }
  const raw = await zlibInflate(joined);
  const bpp = samples * (depth / 8);
  const stride = width * bpp;
  const cur = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[row + i - bpp] : 0;
      const b = y > 0 ? cur[row - stride + i] : 0;
      const c = i >= bpp && y > 0 ? cur[row - stride + i - bpp] : 0;
      const x = src[i];
      cur[row + i] = (f === 0 ? x : f === 1 ? x + a : f === 2 ? x + b : f === 3 ? x + ((a + b) >> 1) : x + paeth(a, b, c)) & 0xff;
    }
  }
  const n = width * height;
  const out = depth === 16 ? new Uint16Array(n) : new Uint8Array(n);
  for (let p = 0; p < n; p++) out[p] = depth === 16 ? (cur[p * bpp] << 8) | cur[p * bpp + 1] : cur[p * bpp];
  return { width, height, bitDepth: depth, data: out };
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
