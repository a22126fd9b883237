/**
 * A decoded VideoFrame shrunk to a seek-bar tile without handing the frame to a canvas.
 *
 * Why not `ctx.drawImage(frame, …)`: in Chromium each VideoFrame drawn into a canvas is converted
 * to a full-size RGBA image in shared memory that outlives `frame.close()` (measured: ~3.7 MB per
 * 720p frame, 411 MiB for 111 tiles, still 470 MiB after 333; not freed by GC). One keyframe per
 * part of a long recording would hold hundreds of MiB in the uploader's tab. Instead the frame's
 * planes are copied (`copyTo`, native format, one reused buffer) and sampled here into a tile-sized
 * RGBA image: a few hundred thousand reads per tile, no conversion of the whole frame.
 */

/** Pixel formats `sampleTile` reads (8-bit); others fall back to the canvas path. */
export const TILE_FORMATS = ['I420', 'I420A', 'I422', 'I444', 'NV12', 'RGBA', 'RGBX', 'BGRA', 'BGRX'] as const;
export type TileFormat = (typeof TILE_FORMATS)[number];

export interface Plane {
  offset: number;
  stride: number;
}

export interface FrameBytes {
  format: TileFormat;
  /** visible size of the copied frame */
  width: number;
  height: number;
  data: Uint8Array;
  planes: readonly Plane[];
  /** `frame.colorSpace`: BT.709 unless it says BT.601 (`smpte170m`/`bt470bg`); limited range unless `fullRange` */
  matrix?: string | null;
  fullRange?: boolean | null;
}

/** samples per output pixel along each axis, at most (bounded work for 4K sources) */
const MAX_TAPS = 4;

/** YCbCr → RGB coefficients: [Kr-based red from Cr, green from Cb, green from Cr, blue from Cb] */
function coefficients(matrix: string | null | undefined): [number, number, number, number] {
  if (matrix === 'smpte170m' || matrix === 'bt470bg') return [1.402, 0.344136, 0.714136, 1.772];
  return [1.5748, 0.187324, 0.468124, 1.8556]; // BT.709
}

const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/**
 * Samples `src` into a `outW`×`outH` RGBA image, averaging up to MAX_TAPS² taps spread over the
 * source block each output pixel covers (so a screen recording's text does not alias away).
 */
export function sampleTile(src: FrameBytes, outW: number, outH: number): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(outW * outH * 4);
  const { width: w, height: h, data, planes, format } = src;
  const tapsX = Math.max(1, Math.min(MAX_TAPS, Math.floor(w / outW)));
  const tapsY = Math.max(1, Math.min(MAX_TAPS, Math.floor(h / outH)));
  const [rv, gu, gv, bu] = coefficients(src.matrix);
  const full = src.fullRange === true;
  const yScale = full ? 1 : 255 / 219;
  const cScale = full ? 1 : 255 / 224;
  const rgb = format === 'RGBA' || format === 'RGBX' || format === 'BGRA' || format === 'BGRX';
  const bgr = format === 'BGRA' || format === 'BGRX';
  // chroma subsampling: I420 / NV12 halve both axes, I422 the horizontal one
  const cx = format === 'I444' ? 0 : 1;
  const cy = format === 'I420' || format === 'I420A' || format === 'NV12' ? 1 : 0;
  const p0 = planes[0]!;
  const p1 = planes[1];
  const p2 = planes[2];
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let ty = 0; ty < tapsY; ty++) {
        for (let tx = 0; tx < tapsX; tx++) {
          // a rotated grid: each tap's row and column both differ, so regular fine detail
          // (text, checkerboards) averages instead of aliasing onto one phase
          const sx = Math.min(w - 1, Math.floor(((ox + (tx + (ty + 0.5) / tapsY) / tapsX) * w) / outW));
          const sy = Math.min(h - 1, Math.floor(((oy + (ty + (tx + 0.5) / tapsX) / tapsY) * h) / outH));
          if (rgb) {
            const i = p0.offset + sy * p0.stride + sx * 4;
            r += data[i + (bgr ? 2 : 0)]!;
            g += data[i + 1]!;
            b += data[i + (bgr ? 0 : 2)]!;
            continue;
          }
          const yv = (data[p0.offset + sy * p0.stride + sx]! - (full ? 0 : 16)) * yScale;
          const csx = sx >> cx;
          const csy = sy >> cy;
          let u: number;
          let v: number;
          if (format === 'NV12') {
            const i = p1!.offset + csy * p1!.stride + csx * 2;
            u = data[i]!;
            v = data[i + 1]!;
          } else {
            u = data[p1!.offset + csy * p1!.stride + csx]!;
            v = data[p2!.offset + csy * p2!.stride + csx]!;
          }
          u = (u - 128) * cScale;
          v = (v - 128) * cScale;
          r += yv + rv * v;
          g += yv - gu * u - gv * v;
          b += yv + bu * u;
        }
      }
      const n = tapsX * tapsY;
      const o = (oy * outW + ox) * 4;
      out[o] = clamp(r / n);
      out[o + 1] = clamp(g / n);
      out[o + 2] = clamp(b / n);
      out[o + 3] = 255;
    }
  }
  return out;
}

export function isTileFormat(format: string | null): format is TileFormat {
  return format !== null && (TILE_FORMATS as readonly string[]).includes(format);
}

/**
 * Copies `frame`'s visible planes into `buffer` (grown when too small; pass the returned one back
 * in) and samples a tile. Null when the frame's pixel format is not one `sampleTile` reads.
 * Does not close the frame.
 */
export async function frameToTile(
  frame: VideoFrame,
  outW: number,
  outH: number,
  buffer: Uint8Array | null,
): Promise<{ pixels: Uint8ClampedArray<ArrayBuffer>; buffer: Uint8Array } | null> {
  if (!isTileFormat(frame.format)) return null;
  const size = frame.allocationSize();
  const data = buffer && buffer.byteLength >= size ? buffer : new Uint8Array(size);
  const planes = await frame.copyTo(data);
  const rect = frame.visibleRect;
  const pixels = sampleTile(
    {
      format: frame.format,
      width: rect?.width ?? frame.codedWidth,
      height: rect?.height ?? frame.codedHeight,
      data,
      planes,
      matrix: frame.colorSpace?.matrix ?? null,
      fullRange: frame.colorSpace?.fullRange ?? null,
    },
    outW,
    outH,
  );
  return { pixels, buffer: data };
}
