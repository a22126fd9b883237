/**
 * Seek-bar previews of the whole video before it is uploaded: the uploader's browser decodes one
 * keyframe per part with WebCodecs (the part's first sample, a real random-access point), draws it
 * as a small tile and packs the tiles into JPEG sprites in the grid the server derives from the
 * plan (GET /api/videos/{id}/previews). The WebVTT thumbnails track (`N.jpg#xywh=…`) and the MPD's
 * DASH-IF image AdaptationSet are written by the server from the same plan, so they name every tile
 * before any sprite exists; the watch page reads the VTT (`parseThumbnailVtt`).
 *
 * Sending: `presignPreviews` (one POST for every sprite), a PUT of each sprite to its URL, then
 * `reportPreviewUploaded` per sprite (the server checks it is a JPEG of the layout's size and
 * publishes it). `sendPreviews` does the three in order, one sprite at a time.
 */
import type { Analysis } from './analyze.ts';
import { Api, ApiError, withRetry } from './api.ts';
import type { PresignedUpload } from './api.ts';
import { frameToTile } from './frame-tile.ts';
import type { Plan } from './planner.ts';
import type { SideUpload } from './uploader.ts';

/** GET /api/videos/{id}/previews */
export interface PreviewLayout {
  tile_width: number;
  tile_height: number;
  columns: number;
  rows: number;
  /** one per part */
  tiles: number;
  sprites: number;
  sprite_width: number;
  sprite_height: number;
  content_type: string;
  max_sprite_bytes: number;
  /** relative to /v/{id}/ */
  vtt_path: string;
}

export interface BuildOptions {
  /** stop decoding after this long; tiles not reached stay blank (default 20 s) */
  budgetMs?: number;
  /** JPEG quality 0..1 (default 0.5) */
  quality?: number;
  /** keyframes decoded between flushes (default 8) */
  batch?: number;
  signal?: AbortSignal;
}

export interface BuiltPreviews {
  layout: PreviewLayout;
  /** sprite i, JPEG */
  sprites: Blob[];
  /** tiles decoded and drawn (the rest are blank) */
  tilesDrawn: number;
  /** tiles the decoder refused (e.g. a "sync" sample that is not a real random-access point) */
  tilesFailed: number;
  bytes: number;
  decodeMs: number;
  encodeMs: number;
  /** why fewer than all tiles were drawn, if so */
  note?: string;
}

/** Tile `tile`'s sprite and top-left pixel (the server's layout: row by row, sprite after sprite). */
export function tilePosition(layout: Pick<PreviewLayout, 'columns' | 'rows' | 'tile_width' | 'tile_height'>, tile: number): { sprite: number; x: number; y: number } {
  const per = layout.columns * layout.rows;
  const within = tile % per;
  return { sprite: Math.floor(tile / per), x: (within % layout.columns) * layout.tile_width, y: Math.floor(within / layout.columns) * layout.tile_height };
}

/** Where one part's keyframe is in the file. */
export interface Keyframe {
  tile: number;
  offset: number;
  size: number;
}

/** The first video sample of every part (the planner starts each part on a random-access point). */
export function keyframesOf(analysis: Pick<Analysis, 'tracks'>, plan: Pick<Plan, 'slots'>): Keyframe[] {
  const ti = analysis.tracks.findIndex((t) => t.kind === 'video');
  const track = analysis.tracks[ti];
  if (!track) return [];
  return plan.slots.map((slot, tile) => {
    const first = slot.tracks[ti]!.first;
    return { tile, offset: track.samples.offset[first]!, size: track.samples.size[first]! };
  });
}

const CONFIG_BOXES = ['avcC', 'hvcC', 'av1C'];

/**
 * The decoder configuration record WebCodecs wants as `description` (avcC / hvcC / av1C payload),
 * found in the track's init segment; undefined for codecs that need none (VP9).
 */
export function codecDescription(init: Uint8Array): Uint8Array | undefined {
  const view = new DataView(init.buffer, init.byteOffset, init.byteLength);
  for (let i = 4; i + 4 <= init.length; i++) {
    const type = String.fromCharCode(init[i]!, init[i + 1]!, init[i + 2]!, init[i + 3]!);
    if (!CONFIG_BOXES.includes(type)) continue;
    const size = view.getUint32(i - 4);
    if (size >= 8 && i - 4 + size <= init.length) return init.slice(i + 4, i - 4 + size);
  }
  return undefined;
}

/** Blank tiles: dark, so a missing preview reads as "no picture" rather than as a frame. */
const BLANK = '#202020';

/**
 * Decodes one keyframe per part and packs the tiles into sprites. Resolves to null where WebCodecs
 * cannot decode the video (no VideoDecoder, or the codec is unsupported): there are no previews then.
 */
export async function buildPreviews(
  file: Blob,
  analysis: Pick<Analysis, 'tracks'>,
  plan: Pick<Plan, 'slots'>,
  layout: PreviewLayout,
  options: BuildOptions = {},
): Promise<BuiltPreviews | null> {
  const track = analysis.tracks.find((t) => t.kind === 'video');
  if (!track || typeof VideoDecoder === 'undefined' || typeof OffscreenCanvas === 'undefined') return null;
  const description = codecDescription(track.initSegment);
  const config: VideoDecoderConfig = {
    codec: track.codec,
    ...(track.width && track.height ? { codedWidth: Math.round(track.width), codedHeight: Math.round(track.height) } : {}),
    ...(description ? { description } : {}),
    optimizeForLatency: true,
  };
  try {
    if (!(await VideoDecoder.isConfigSupported(config)).supported) return null;
  } catch {
    return null;
  }
  const budgetMs = options.budgetMs ?? 20_000;
  const batch = Math.max(1, options.batch ?? 8);
  // Sprites are filled in tile order, so each is encoded as soon as its last tile is drawn and its
  // canvas dropped: one or two canvases live at a time instead of all of them (a 3-hour video has
  // 14 sprites of 1280×720, 3.7 MB each).
  const tilesPerSprite = layout.columns * layout.rows;
  const canvases = new Map<number, { c: OffscreenCanvas; ctx: OffscreenCanvasRenderingContext2D }>();
  const canvasOf = (sprite: number): { c: OffscreenCanvas; ctx: OffscreenCanvasRenderingContext2D } => {
    let target = canvases.get(sprite);
    if (!target) {
      const c = new OffscreenCanvas(layout.sprite_width, layout.sprite_height);
      const ctx = c.getContext('2d')!;
      ctx.fillStyle = BLANK;
      ctx.fillRect(0, 0, c.width, c.height);
      target = { c, ctx };
      canvases.set(sprite, target);
    }
    return target;
  };
  const quality = options.quality ?? 0.5;
  const sprites: Blob[] = new Array<Blob>(layout.sprites);
  let encodeMs = 0;
  /** Encodes sprites [from, to) and frees their canvases (blank ones for sprites never drawn). */
  const encode = async (from: number, to: number): Promise<void> => {
    const t = performance.now();
    for (let i = from; i < to; i++) {
      if (sprites[i]) continue;
      const { c } = canvasOf(i);
      sprites[i] = await c.convertToBlob({ type: 'image/jpeg', quality });
      canvases.delete(i);
      c.width = 0; // releases the backing store now, not at the next GC
    }
    encodeMs += performance.now() - t;
  };
  let drawn = 0;
  let failed = 0;
  let note: string | undefined;
  // One frame at a time through one reused buffer (see frame-tile.ts for why not drawImage).
  let copying: Promise<void> = Promise.resolve();
  let planes: Uint8Array | null = null;
  const drawOne = async (frame: VideoFrame): Promise<void> => {
    try {
      const { sprite, x, y } = tilePosition(layout, Math.round(frame.timestamp / 1000));
      if (sprite >= layout.sprites || sprites[sprite]) return;
      const target = canvasOf(sprite);
      const tile = await frameToTile(frame, layout.tile_width, layout.tile_height, planes);
      if (tile) {
        planes = tile.buffer;
        target.ctx.putImageData(new ImageData(tile.pixels, layout.tile_width, layout.tile_height), x, y);
      } else {
        target.ctx.drawImage(frame, x, y, layout.tile_width, layout.tile_height); // a format sampleTile does not read
      }
      drawn++;
    } finally {
      frame.close();
    }
  };
  const draw = (frame: VideoFrame): void => {
    copying = copying.then(() => drawOne(frame)).catch(() => undefined);
  };
  let decoderError: unknown = null;
  const open = (): VideoDecoder => {
    const d = new VideoDecoder({ output: draw, error: (e) => (decoderError = e) });
    d.configure(config);
    return d;
  };
  let decoder = open();
  const started = performance.now();
  const keyframes = keyframesOf(analysis, plan).slice(0, layout.tiles);
  for (let at = 0; at < keyframes.length; at += batch) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (performance.now() - started > budgetMs) {
      note = `time budget of ${budgetMs} ms reached after ${at} of ${keyframes.length} parts`;
      break;
    }
    const group = keyframes.slice(at, at + batch);
    const bytes = await Promise.all(group.map((k) => file.slice(k.offset, k.offset + k.size).arrayBuffer()));
    const drawnBefore = drawn;
    try {
      group.forEach((k, i) => decoder.decode(new EncodedVideoChunk({ type: 'key', timestamp: k.tile * 1000, data: bytes[i]! })));
      await decoder.flush();
      await copying;
    } catch (e) {
      await copying;
      // one bad keyframe closes the decoder: count the group's undrawn tiles, start a new one
      failed += group.length - (drawn - drawnBefore);
      note = `the decoder refused a keyframe (${e instanceof Error ? e.message : String(decoderError ?? e)})`;
      if (decoder.state !== 'closed') decoder.close();
      decoderError = null;
      decoder = open();
    }
    // every tile before the next group is drawn: the sprites holding only those are done
    await encode(0, Math.min(layout.sprites, Math.floor((at + batch) / tilesPerSprite)));
  }
  if (decoder.state !== 'closed') decoder.close();
  await encode(0, layout.sprites);
  const decodeMs = performance.now() - started - encodeMs;
  const out: BuiltPreviews = {
    layout,
    sprites,
    tilesDrawn: drawn,
    tilesFailed: failed,
    bytes: sprites.reduce((n, b) => n + b.size, 0),
    decodeMs,
    encodeMs,
  };
  if (note) out.note = note;
  return out;
}

async function call<T>(method: string, url: string, secret?: string, body?: unknown): Promise<T> {
  return withRetry(
    async () => {
      const headers: Record<string, string> = {};
      if (secret) headers.authorization = `Bearer ${secret}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(url, { method, headers, cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const json = (await res.json().catch(() => ({}))) as T & { error?: string; message?: string };
      if (!res.ok) throw new ApiError(res.status, json.error ?? `http_${res.status}`, json.message ?? `${res.status} ${res.statusText}`);
      return json;
    },
    { maxAttempts: 5 },
  );
}

const videoPath = (apiBase: string, videoId: string): string => `${apiBase}/api/videos/${encodeURIComponent(videoId)}/previews`;

/** The sprite grid for a video (public; 409 `no_previews` when it has no video track with dimensions). */
export function fetchPreviewLayout(apiBase: string, videoId: string): Promise<PreviewLayout> {
  return call('GET', videoPath(apiBase, videoId));
}

export interface SpriteUpload extends Omit<PresignedUpload, 'track_id'> {
  index: number;
}

/** Presigned PUTs for the built sprites (one request for all of them). */
export async function presignPreviews(apiBase: string, videoId: string, secret: string, built: Pick<BuiltPreviews, 'sprites'>): Promise<SpriteUpload[]> {
  const r = await call<{ uploads: SpriteUpload[] }>('POST', videoPath(apiBase, videoId), secret, {
    sprites: built.sprites.map((b, index) => ({ index, size: b.size })),
  });
  return r.uploads;
}

/** After the PUT of sprite `index`: the server checks it and makes it public. */
export function reportPreviewUploaded(apiBase: string, videoId: string, secret: string, index: number): Promise<{ sprite: number; published: boolean }> {
  return call('POST', `${videoPath(apiBase, videoId)}/${index}/uploaded`, secret);
}

/** Presign, PUT and report every sprite, one after the other (small: well under 1 MB in all). */
export async function sendPreviews(apiBase: string, videoId: string, secret: string, built: BuiltPreviews, signal?: AbortSignal): Promise<void> {
  const uploads = await presignPreviews(apiBase, videoId, secret, built);
  const api = new Api(apiBase);
  for (const u of uploads) {
    await withRetry(() => api.put({ ...u, track_id: 0 }, built.sprites[u.index]!, signal), { maxAttempts: 5, ...(signal ? { signal } : {}) });
    await reportPreviewUploaded(apiBase, videoId, secret, u.index);
  }
}

/** One cue of a WebVTT thumbnails track: a time range and the tile showing it. */
export interface ThumbnailCue {
  start: number;
  end: number;
  /** absolute sprite URL */
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

const parseTime = (t: string): number => {
  const parts = t.trim().split(':').map(Number);
  return parts.reduce((acc, p) => acc * 60 + p, 0);
};

/** Parses a thumbnails track (`start --> end` then `sprite.jpg#xywh=x,y,w,h`); URLs resolved against `base`. */
export function parseThumbnailVtt(text: string, base: string): ThumbnailCue[] {
  const lines = text.split(/\r?\n/);
  if (!lines[0]?.startsWith('WEBVTT')) return [];
  const cues: ThumbnailCue[] = [];
  for (let i = 1; i < lines.length; i++) {
    const timing = /^([\d:.]+)\s+-->\s+([\d:.]+)/.exec(lines[i]!);
    if (!timing) continue;
    const target = lines[i + 1]?.trim() ?? '';
    const m = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(target);
    if (!m) continue;
    cues.push({ start: parseTime(timing[1]!), end: parseTime(timing[2]!), url: new URL(m[1]!, base).href, x: +m[2]!, y: +m[3]!, w: +m[4]!, h: +m[5]! });
    i++;
  }
  return cues.sort((a, b) => a.start - b.start);
}

/** The cue showing time `t` (binary search; past the end: the last cue). */
export function cueAt(cues: readonly ThumbnailCue[], t: number): ThumbnailCue | undefined {
  let lo = 0;
  let hi = cues.length - 1;
  if (hi < 0) return undefined;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (cues[mid]!.start <= t + 1e-6) lo = mid;
    else hi = mid - 1;
  }
  return cues[lo];
}

/**
 * The previews as the uploader's side uploads: layout, build (WebCodecs), one presign for all
 * sprites; each sprite is then PUT by the uploader's scheduler (as soon as made: ahead of natural
 * order, beside part 0 while no viewer has asked for it; never ahead of or beside a part a viewer
 * waits for) and reported. No previews (no video track, codec not decodable here) → an empty list.
 */
export async function previewSideUploads(
  apiBase: string,
  videoId: string,
  secret: string,
  file: Blob,
  analysis: Pick<Analysis, 'tracks'>,
  plan: Pick<Plan, 'slots'>,
  options: BuildOptions = {},
): Promise<SideUpload[]> {
  let layout: PreviewLayout;
  try {
    layout = await fetchPreviewLayout(apiBase, videoId);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'no_previews') return [];
    throw e;
  }
  const built = await buildPreviews(file, analysis, plan, layout, options);
  if (!built) return [];
  const uploads = await presignPreviews(apiBase, videoId, secret, built);
  return uploads.map((u) => ({
    label: `preview sprite ${u.index}`,
    upload: { ...u, track_id: 0 },
    body: built.sprites[u.index]!,
    published: () => reportPreviewUploaded(apiBase, videoId, secret, u.index),
  }));
}
