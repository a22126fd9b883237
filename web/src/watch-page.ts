import { Api, ApiError, partsFromStates } from './lib/api.ts';
import { capabilities, choosePlayer } from './lib/player-choice.ts';
import { startDash, startHls, startNative } from './lib/players.ts';
import type { PlayerHooks, WatchPlayer } from './lib/players.ts';
import type { StatusResponse } from './lib/api.ts';
import { trace } from './lib/trace.ts';
import { attachSeekPreview } from './seek-preview.ts';
import { drawAvailability, formatDuration } from './ui.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

const params = new URLSearchParams(location.search);
const videoId = params.get('v') ?? '';
const apiBase = (params.get('api') ?? '').replace(/\/$/, '');
const api = new Api(apiBase, { maxAttempts: 3 });
/**
 * `noprioritize=1` (benchmarks' natural-order baseline): never ask the uploader for anything —
 * no prioritize calls, and segment requests carry `nohint=1` so the server does not take a miss
 * as a hint either.
 */
const noPrioritize = params.get('noprioritize') === '1';
const video = $<HTMLVideoElement>('video');
const overlay = $('overlay');
const overlayText = $('overlay-text');
const availability = $<HTMLCanvasElement>('availability');
const audioPicker = $<HTMLSelectElement>('audio-track');
let player: WatchPlayer | null = null;

/** The audio track picker, shown when the video has more than one audio track. */
function showAudioTracks(): void {
  const tracks = player?.audioTracks() ?? [];
  $('audio-row').hidden = tracks.length < 2;
  const key = JSON.stringify(tracks);
  if (audioPicker.dataset.tracks === key) return;
  audioPicker.dataset.tracks = key;
  audioPicker.replaceChildren(
    ...tracks.map((t) => {
      const o = document.createElement('option');
      o.value = String(t.id);
      o.textContent = t.language ? `${t.label} (${t.language})` : t.label;
      o.selected = t.selected;
      return o;
    }),
  );
}

let status: StatusResponse | null = null;
/** the parts' times, from the first full status answer: later polls ask for the states only */
let partTimes: { start: number; duration: number }[] | null = null;
let lastMissAt = 0;
const lastMissBySlot = new Map<number, number>();

function setState(s: string): void {
  document.body.dataset.state = s;
}
function fatal(text: string): void {
  setState('error');
  const el = $('watch-error');
  el.hidden = false;
  el.textContent = text;
  overlay.hidden = true;
}

function slotAt(t: number): number {
  if (!status) return -1;
  const slots = status.slots;
  let lo = 0;
  let hi = slots.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (slots[mid]!.start <= t + 1e-6) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

async function prioritize(target: { position: number } | { slot: number }): Promise<void> {
  if (status?.complete || noPrioritize) return;
  try {
    trace('prioritize-sent', target);
    const r = await api.prioritize(videoId, target);
    trace('prioritize-acked', { ...target, window: r.window });
    console.debug('[chunkstream] prioritize', target, r);
  } catch (e) {
    console.debug('[chunkstream] prioritize failed', e);
  }
}

/** A segment that isn't published yet: ask the uploader for it (throttled per slot). */
function onMiss(slot: number): void {
  const now = performance.now();
  lastMissAt = now;
  if (now - (lastMissBySlot.get(slot) ?? -Infinity) < 3000) return;
  lastMissBySlot.set(slot, now);
  void prioritize({ slot });
  updateOverlay();
}

/**
 * Status with every part: the full answer once (~50 bytes per part), then one letter per part
 * (a 3-hour video polled every 2 s would otherwise cost a phone ~50 kB/s).
 */
async function fetchStatus(): Promise<StatusResponse> {
  if (partTimes) {
    const s = await api.status(videoId, undefined, 'states');
    const slots = partsFromStates(partTimes, s.states);
    if (slots) return { ...s, slots };
  }
  const s = await api.status(videoId);
  if (s.states !== undefined && s.slots.length === s.slot_count) partTimes = s.slots.map(({ start, duration }) => ({ start, duration }));
  return s;
}

/**
 * While the video is still uploading, tell the server this page is open (now and every minute):
 * the uploader's feed then watches for this page's seeks every 250 ms instead of every second.
 */
let lastWatchingAt = -Infinity;
function sayWatching(): void {
  const now = performance.now();
  if (status?.complete !== false || noPrioritize || now - lastWatchingAt < 60_000) return;
  lastWatchingAt = now;
  api.watching(videoId).catch((e: unknown) => console.debug('[chunkstream] watching failed', e));
}

async function pollStatus(): Promise<void> {
  try {
    status = await fetchStatus();
    sayWatching();
    setState(status.complete ? 'complete' : 'uploading');
    const pub = status.counts.published ?? 0;
    $('watch-status').textContent = status.complete
      ? `Fully uploaded · ${formatDuration(status.duration)}`
      : `Still uploading: ${pub} of ${status.slot_count} parts playable (${Math.round((100 * pub) / Math.max(1, status.slot_count))}%). ` +
        'Parts not uploaded yet are requested from the uploader when you get there.';
    draw();
    updateOverlay();
  } catch (e) {
    if (e instanceof ApiError && e.status === 410) fatal('This video was deleted by its owner.');
    else if (e instanceof ApiError && e.status === 404) fatal('This video does not exist (the link may be wrong, or the video was deleted).');
    else $('watch-status').textContent = `Could not refresh the upload status (${e instanceof Error ? e.message : String(e)}).`;
  }
  if (!status?.complete && document.body.dataset.state !== 'error') setTimeout(() => void pollStatus(), 2000);
}

function bufferedRanges(): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < video.buffered.length; i++) out.push([video.buffered.start(i), video.buffered.end(i)]);
  return out;
}

function draw(): void {
  const duration = status?.duration || video.duration || 0;
  drawAvailability(availability, duration, status?.slots ?? [], bufferedRanges(), video.currentTime);
}

/** how far before the start of a part a seek is moved to it, when the part before is not published */
const SNAP_BEFORE_S = 0.5;
/** where in the part the moved seek lands: past any track's boundary (audio is cut at the frame nearest the video cut) */
const SNAP_INTO_S = 0.1;

/**
 * A seek landing in the last moments of a part that is not published yet starts at the next part
 * instead: otherwise the player first asks for that part — a whole part to wait for, for less than
 * SNAP_BEFORE_S of video (with exact boundaries, the tracks may even disagree on which part a time
 * falls in, and both parts are needed). Returns the new target, or null to keep the seek.
 */
function snapSeek(t: number): number | null {
  if (!status || status.complete) return null;
  const k = slotAt(t);
  for (const j of [k, k + 1]) {
    const part = status.slots[j];
    const before = status.slots[j - 1];
    if (!part || !before || before.state === 'published') continue;
    const b = part.start;
    if (t > b - SNAP_BEFORE_S && t < b + SNAP_INTO_S - 1e-3) return b + SNAP_INTO_S;
  }
  return null;
}

type FrameCallbackVideo = HTMLVideoElement & {
  requestVideoFrameCallback?: (cb: (now: number, meta: { mediaTime: number }) => void) => number;
  cancelVideoFrameCallback?: (handle: number) => void;
};
let frameWatch: number | null = null;
/** Trace the first frame presented at (or after) a seek target. */
function watchFirstFrame(target: number): void {
  const v = video as FrameCallbackVideo;
  if (!v.requestVideoFrameCallback) return;
  if (frameWatch !== null) v.cancelVideoFrameCallback?.(frameWatch);
  const onFrame = (_now: number, meta: { mediaTime: number }): void => {
    if (meta.mediaTime >= target - 0.5 && !video.seeking) {
      frameWatch = null;
      trace('first-frame', { target, mediaTime: meta.mediaTime });
    } else {
      frameWatch = v.requestVideoFrameCallback!(onFrame);
    }
  };
  frameWatch = v.requestVideoFrameCallback(onFrame);
}

function stalled(): boolean {
  return !video.paused && (video.seeking || video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) && !video.ended;
}

function updateOverlay(): void {
  if (document.body.dataset.state === 'error') return;
  if (!stalled()) {
    overlay.hidden = true;
    document.body.dataset.waiting = 'false';
    return;
  }
  const slot = slotAt(video.currentTime);
  const st = slot >= 0 ? status?.slots[slot]?.state : undefined;
  const missing = (st !== undefined && st !== 'published') || performance.now() - lastMissAt < 2500;
  overlay.hidden = false;
  if (missing && !status?.complete) {
    document.body.dataset.waiting = 'true';
    overlayText.textContent =
      `Waiting for the uploader… this part (${formatDuration(video.currentTime)}) is not uploaded yet; ` +
      'it has been asked for first. Playback resumes by itself.';
  } else {
    document.body.dataset.waiting = 'false';
    overlayText.textContent = 'Loading…';
  }
}

availability.addEventListener('click', (e) => {
  const duration = status?.duration || video.duration;
  if (!(duration > 0)) return;
  const rect = availability.getBoundingClientRect();
  video.currentTime = ((e.clientX - rect.left) / rect.width) * duration;
});

if (!videoId) {
  fatal('This link has no video id (expected watch.html?v=…).');
} else {
  const base = `${apiBase}/v/${encodeURIComponent(videoId)}`;
  const kind = choosePlayer(capabilities(video), params.get('player'));
  document.body.dataset.player = kind;
  trace('player', { kind });
  const hooks: PlayerHooks = {
    noHint: noPrioritize,
    onMiss(track, slot, code) {
      trace('seg-miss', { track, slot, status: code });
      onMiss(slot);
    },
    onLoaded(track, slot) {
      trace('seg-loaded', { track, slot });
    },
    onFatal: fatal,
    onAutoplayBlocked() {
      // autoplay with sound blocked: play muted, offer to unmute
      video.muted = true;
      void video.play().catch(() => undefined);
      $('unmute-row').hidden = false;
    },
    onAudioTracks: () => showAudioTracks(),
  };
  audioPicker.addEventListener('change', () => {
    const id = Number(audioPicker.value);
    trace('audio-selected', { id });
    player?.selectAudio(id);
  });
  $('unmute').addEventListener('click', () => {
    video.muted = false;
    $('unmute-row').hidden = true;
  });
  let seekTimer: ReturnType<typeof setTimeout> | null = null;
  let lastSeekPrioritizeAt = -Infinity;
  let lastSeekTarget = -1;
  video.addEventListener('seeking', () => {
    const target = video.currentTime;
    const snapped = snapSeek(target);
    if (snapped !== null) {
      // a new 'seeking' event follows (dash.js, listening after us, already sees the new time)
      trace('seek-snapped', { from: target, to: snapped });
      video.currentTime = snapped;
      return;
    }
    trace('seeking', { position: target });
    lastSeekTarget = target;
    watchFirstFrame(target);
    // ask for the part the viewer jumped to at once; while the scrubber is dragged (many seeks
    // in a row) at most every 250 ms, plus once where it stops
    if (seekTimer) clearTimeout(seekTimer);
    const now = performance.now();
    if (now - lastSeekPrioritizeAt >= 250) {
      lastSeekPrioritizeAt = now;
      void prioritize({ position: target });
    } else {
      seekTimer = setTimeout(() => {
        lastSeekPrioritizeAt = performance.now();
        void prioritize({ position: video.currentTime });
      }, 250);
    }
    updateOverlay();
  });
  video.addEventListener('seeked', () => trace('seeked', { position: video.currentTime, target: lastSeekTarget }));
  video.addEventListener('playing', () => trace('playing', { position: video.currentTime }));
  for (const ev of ['waiting', 'playing', 'pause', 'seeked', 'canplay', 'stalled'] as const) video.addEventListener(ev, updateOverlay);
  video.addEventListener('timeupdate', draw);
  setInterval(() => {
    updateOverlay();
    draw();
  }, 500);
  watchFirstFrame(0);
  attachSeekPreview({
    vttUrl: `${base}/previews/thumbnails.vtt`,
    bar: availability,
    preview: $('seek-preview'),
    duration: () => status?.duration || video.duration || 0,
    video,
  });
  // after the page's own 'seeking' listener (snapSeek must see a seek before the player does)
  if (kind === 'dash') player = startDash(video, `${base}/manifest.mpd`, hooks);
  else if (kind === 'native') player = startNative(video, `${base}/master.m3u8`, hooks);
  else {
    startHls(video, `${base}/master.m3u8`, hooks).then(
      (p) => (player = p),
      (e: unknown) => fatal(`The player could not be loaded (${e instanceof Error ? e.message : String(e)}).`),
    );
  }
  void pollStatus();
}
