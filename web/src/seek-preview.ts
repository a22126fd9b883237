/**
 * The watch page's seek-bar previews: hovering the availability bar shows the tile of the part at
 * that position (from the WebVTT thumbnails track), uploaded or not; the first tile becomes the
 * poster. Sprites not uploaded yet (404) are asked for again a few seconds later.
 */
import { cueAt, parseThumbnailVtt } from './lib/previews.ts';
import type { ThumbnailCue } from './lib/previews.ts';
import { formatDuration } from './ui.ts';

const RETRY_MS = 4000;
/** tiles are drawn this much larger than stored (128 px long side) */
const SCALE = 1.25;

interface Sprite {
  img: HTMLImageElement;
  state: 'loading' | 'ok' | 'missing';
  at: number;
  waiters: (() => void)[];
}

export interface SeekPreviewOptions {
  vttUrl: string;
  /** the bar hovered (its width is the whole duration) */
  bar: HTMLElement;
  /** the preview box, with a `.tile` and a `.time` child */
  preview: HTMLElement;
  duration: () => number;
  video: HTMLVideoElement;
}

export function attachSeekPreview(o: SeekPreviewOptions): void {
  const tile = o.preview.querySelector<HTMLElement>('.tile')!;
  const time = o.preview.querySelector<HTMLElement>('.time')!;
  const sprites = new Map<string, Sprite>();
  let cues: ThumbnailCue[] = [];

  /** The sprite, (re)loading it if it is not there and was not tried in the last RETRY_MS. */
  const sprite = (url: string, onChange: () => void): Sprite => {
    let s = sprites.get(url);
    if (!s || (s.state === 'missing' && performance.now() - s.at > RETRY_MS)) {
      const img = new Image();
      const fresh: Sprite = { img, state: 'loading', at: performance.now(), waiters: [] };
      img.onload = () => settle('ok');
      img.onerror = () => settle('missing');
      const settle = (state: Sprite['state']): void => {
        fresh.state = state;
        fresh.at = performance.now();
        for (const w of fresh.waiters.splice(0)) w();
      };
      img.crossOrigin = 'anonymous'; // the poster is read back from a canvas
      img.src = url;
      sprites.set(url, fresh);
      s = fresh;
    }
    if (s.state === 'loading') s.waiters.push(onChange);
    return s;
  };

  let hoverT: number | null = null;
  const show = (): void => {
    const duration = o.duration();
    const cue = hoverT === null ? undefined : cueAt(cues, hoverT);
    if (hoverT === null || !(duration > 0)) {
      o.preview.hidden = true;
      return;
    }
    o.preview.hidden = false;
    time.textContent = formatDuration(hoverT);
    const s = cue ? sprite(cue.url, show) : undefined;
    o.preview.dataset.loaded = String(s?.state === 'ok');
    if (cue && s?.state === 'ok') {
      o.preview.dataset.tile = `${cue.url}#xywh=${cue.x},${cue.y},${cue.w},${cue.h}`;
      tile.hidden = false;
      tile.style.width = `${cue.w * SCALE}px`;
      tile.style.height = `${cue.h * SCALE}px`;
      tile.style.backgroundImage = `url("${cue.url}")`;
      tile.style.backgroundSize = `${s.img.naturalWidth * SCALE}px ${s.img.naturalHeight * SCALE}px`;
      tile.style.backgroundPosition = `${-cue.x * SCALE}px ${-cue.y * SCALE}px`;
    } else {
      delete o.preview.dataset.tile;
      tile.hidden = true;
    }
    const bar = o.bar.getBoundingClientRect();
    const parent = o.preview.offsetParent?.getBoundingClientRect() ?? bar;
    const x = bar.left - parent.left + (hoverT / duration) * bar.width;
    const half = o.preview.offsetWidth / 2;
    o.preview.style.left = `${Math.max(0, Math.min(parent.width - 2 * half, x - half))}px`;
    o.preview.style.top = `${bar.top - parent.top - o.preview.offsetHeight - 6}px`;
  };
  o.bar.addEventListener('mousemove', (e) => {
    const rect = o.bar.getBoundingClientRect();
    hoverT = Math.max(0, Math.min(1, (e.clientX - rect.left) / rect.width)) * o.duration();
    show();
  });
  o.bar.addEventListener('mouseleave', () => {
    hoverT = null;
    show();
  });

  /** The first tile as the poster, until the video has shown a frame. */
  const poster = (): void => {
    const first = cues[0];
    if (!first || o.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) return;
    const s = sprite(first.url, poster);
    if (s.state === 'missing') {
      setTimeout(poster, RETRY_MS);
      return;
    }
    if (s.state !== 'ok') return;
    const c = document.createElement('canvas');
    c.width = first.w;
    c.height = first.h;
    c.getContext('2d')!.drawImage(s.img, first.x, first.y, first.w, first.h, 0, 0, first.w, first.h);
    try {
      o.video.poster = c.toDataURL('image/jpeg', 0.9);
    } catch {
      /* a sprite served without CORS: no poster */
    }
  };

  void fetch(o.vttUrl)
    .then((r) => (r.ok ? r.text() : ''))
    .then((text) => {
      cues = parseThumbnailVtt(text, new URL(o.vttUrl, location.href).href);
      o.bar.dataset.previews = String(cues.length);
      poster();
    })
    .catch(() => undefined);
}
