/**
 * The watch page's three ways to play a link, behind one small interface:
 *  - `dash`: dash.js on the MPD, through MSE or ManagedMediaSource (dash.js prefers MMS where it
 *    exists, as on iOS 17.1+; `disableRemotePlayback` is set so MMS opens);
 *  - `hls`: hls.js on the HLS playlists (the same parts), through MSE/MMS;
 *  - `native`: the browser's own HLS on `<video src=master.m3u8>` (iPhones before iOS 17.1: no MSE).
 * Which one a browser gets: player-choice.ts.
 * A part that is not uploaded yet answers 404: every path keeps asking (250 ms apart) for as long as
 * it takes, and reports the miss so the page can prioritize it.
 */
import { Debug, MediaPlayer } from 'dashjs';
import type { MediaInfo, MediaPlayerClass } from 'dashjs';
import type { ErrorData } from 'hls.js';
import { capabilities } from './player-choice.ts';
import type { PlayerKind } from './player-choice.ts';
import { retryMissingParts } from './retry-missing.ts';
import { withViewer } from './viewer-id.ts';


export interface AudioTrackChoice {
  /** the player's own id for the track (index) */
  id: number;
  label: string;
  language?: string;
  selected: boolean;
}

export interface PlayerHooks {
  /** a part not published yet was asked for (404/403) */
  onMiss(track: number, slot: number, status: number): void;
  onLoaded(track: number, slot: number): void;
  /** the player gave up: the manifest is unavailable or the browser cannot decode */
  onFatal(message: string): void;
  onAutoplayBlocked(): void;
  /** the list of audio tracks (or the selected one) changed */
  onAudioTracks(): void;
  /** `noprioritize=1`: segment requests carry `nohint=1` */
  noHint: boolean;
}

export interface WatchPlayer {
  readonly kind: PlayerKind;
  audioTracks(): AudioTrackChoice[];
  selectAudio(id: number): void;
}

/** How often a missing part is asked for again; bounds how late a just-published part is noticed. */
export const RETRY_MS = 250;

const SEGMENT_URL = /\/seg\/(\d+)\/(\d+)\.m4s(?:\?|$)/;

function segmentOf(url: string): { track: number; slot: number } | null {
  const m = SEGMENT_URL.exec(url);
  return m ? { track: Number(m[1]), slot: Number(m[2]) } : null;
}

export function startDash(video: HTMLVideoElement, manifestUrl: string, hooks: PlayerHooks): WatchPlayer {
  if (capabilities(video).mms) video.disableRemotePlayback = true;
  const player: MediaPlayerClass = MediaPlayer().create();
  player.updateSettings({
    debug: { logLevel: Debug.LOG_LEVEL_WARNING },
    streaming: {
      // dash.js' default, 3 attempts, stops playback for good after one miss
      retryAttempts: { MediaSegment: 1_000_000, InitializationSegment: 1_000_000, MPD: 10 },
      retryIntervals: { MediaSegment: RETRY_MS, InitializationSegment: RETRY_MS, MPD: 1000 },
    },
  });
  // every part request names this viewer (its misses move only its own window), or says nohint
  player.addRequestInterceptor(async (request) => {
    if (SEGMENT_URL.test(request.url)) request.url = withViewer(request.url, hooks.noHint);
    return request;
  });
  player.addResponseInterceptor(async (response) => {
    const seg = segmentOf(response.request.url);
    if (seg) {
      const code = response.status ?? 0;
      if (code === 404 || code === 403) hooks.onMiss(seg.track, seg.slot, code);
      else if (code >= 200 && code < 300) hooks.onLoaded(seg.track, seg.slot);
    }
    return response;
  });
  player.on(MediaPlayer.events.PLAYBACK_NOT_ALLOWED, () => hooks.onAutoplayBlocked());
  player.on(MediaPlayer.events.ERROR, (e: unknown) => {
    const err = (e as { error?: { code?: number; message?: string } }).error;
    console.warn('[chunkstream] dash.js error', err);
    const msg = err?.message ?? '';
    if (/manifest|mpd/i.test(msg) || err?.code === 25 /* MANIFEST_LOADER_LOADING_FAILURE */) {
      hooks.onFatal('The video could not be loaded (its manifest is unavailable).');
    } else if (/codec|MEDIASOURCE|source buffer|decode/i.test(msg)) {
      hooks.onFatal(`This browser cannot play this video (${msg}).`);
    }
  });
  for (const ev of [MediaPlayer.events.STREAM_INITIALIZED, MediaPlayer.events.TRACK_CHANGE_RENDERED]) player.on(ev, () => hooks.onAudioTracks());
  player.initialize(video, manifestUrl, true);
  (globalThis as { chunkstreamPlayer?: unknown }).chunkstreamPlayer = player;
  const tracks = (): MediaInfo[] => {
    try {
      return player.getTracksFor('audio');
    } catch {
      return []; // not initialised yet
    }
  };
  return {
    kind: 'dash',
    audioTracks() {
      const current = player.getCurrentTrackFor('audio');
      return tracks().map((t, i) => {
        const choice: AudioTrackChoice = { id: i, label: t.labels?.[0]?.text || t.lang || `Audio ${i + 1}`, selected: t === current || t.id === current?.id };
        if (t.lang) choice.language = t.lang;
        return choice;
      });
    },
    selectAudio(id) {
      const t = tracks()[id];
      if (t) player.setCurrentTrack(t);
    },
  };
}


/** hls.js is loaded only by pages that use it (a separate chunk; dash.js viewers never fetch it). */
export async function startHls(video: HTMLVideoElement, masterUrl: string, hooks: PlayerHooks): Promise<WatchPlayer> {
  const { default: Hls } = await import('hls.js');
  if (!Hls.isSupported()) {
    hooks.onFatal('This browser cannot play this video (no MediaSource for hls.js).');
    return { kind: 'hls', audioTracks: () => [], selectAudio: () => undefined };
  }
  const missing = { maxNumRetry: 1_000_000, retryDelayMs: RETRY_MS, maxRetryDelayMs: RETRY_MS, backoff: 'linear' as const, shouldRetry: retryMissingParts };
  const fragPolicy = {
    default: { maxTimeToFirstByteMs: 10_000, maxLoadTimeMs: 120_000, timeoutRetry: missing, errorRetry: missing },
  };
  const hls = new Hls({
    fragLoadPolicy: fragPolicy,
    // init segments (EXT-X-MAP) are loaded like parts; the init of a track may not be up yet either
    playlistLoadPolicy: {
      default: {
        maxTimeToFirstByteMs: 10_000,
        maxLoadTimeMs: 20_000,
        timeoutRetry: { maxNumRetry: 10, retryDelayMs: 1000, maxRetryDelayMs: 1000 },
        errorRetry: { maxNumRetry: 10, retryDelayMs: 1000, maxRetryDelayMs: 1000 },
      },
    },
    xhrSetup: (xhr, url) => {
      if (SEGMENT_URL.test(url)) xhr.open('GET', withViewer(url, hooks.noHint), true);
    },
  });
  hls.on(Hls.Events.FRAG_LOADED, (_e, data) => {
    const seg = segmentOf(data.frag.url);
    if (seg) hooks.onLoaded(seg.track, seg.slot);
  });
  hls.on(Hls.Events.ERROR, (_e, data: ErrorData) => {
    const url = data.frag?.url ?? data.url ?? '';
    const seg = segmentOf(url);
    const code = data.response?.code ?? 0;
    if (seg && (code === 404 || code === 403)) {
      hooks.onMiss(seg.track, seg.slot, code);
      return;
    }
    if (!data.fatal) return;
    console.warn('[chunkstream] hls.js fatal error', data.type, data.details);
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR || data.details === Hls.ErrorDetails.MANIFEST_PARSING_ERROR) {
      hooks.onFatal('The video could not be loaded (its playlist is unavailable).');
    } else hooks.onFatal(`The video could not be played (${data.details}).`);
  });
  for (const ev of [Hls.Events.AUDIO_TRACKS_UPDATED, Hls.Events.AUDIO_TRACK_SWITCHED]) hls.on(ev, () => hooks.onAudioTracks());
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch(() => hooks.onAutoplayBlocked());
  });
  hls.loadSource(masterUrl);
  hls.attachMedia(video);
  (globalThis as { chunkstreamPlayer?: unknown }).chunkstreamPlayer = hls;
  return {
    kind: 'hls',
    audioTracks() {
      return hls.audioTracks.map((t, i) => {
        const choice: AudioTrackChoice = { id: i, label: t.name || t.lang || `Audio ${i + 1}`, selected: i === hls.audioTrack };
        if (t.lang) choice.language = t.lang;
        return choice;
      });
    },
    selectAudio(id) {
      hls.audioTrack = id;
    },
  };
}

interface NativeAudioTrack {
  label: string;
  language: string;
  enabled: boolean;
}
interface NativeAudioTrackList {
  readonly length: number;
  [index: number]: NativeAudioTrack;
  addEventListener(type: 'change' | 'addtrack', cb: () => void): void;
}

/**
 * The browser's own HLS. How long it waits for a missing part is its own business (AVFoundation
 * retries for a while, then fails): on an error the page reloads the playlist and seeks back to
 * where it was, every RETRY_MS·4, so a missing part is waited for here too. The server counts every
 * 404 as a prioritize hint, and the page prioritizes on each seek.
 */
export function startNative(video: HTMLVideoElement, masterUrl: string, hooks: PlayerHooks): WatchPlayer {
  let resumeAt = 0;
  let errors = 0;
  video.addEventListener('error', () => {
    errors++;
    if (errors > 2000) {
      hooks.onFatal('The video could not be played by this browser.');
      return;
    }
    resumeAt = Math.max(resumeAt, video.currentTime || 0);
    setTimeout(() => {
      video.src = masterUrl;
      video.load();
    }, RETRY_MS * 4);
  });
  video.addEventListener('loadedmetadata', () => {
    if (resumeAt > 0) video.currentTime = resumeAt;
    video.play().catch(() => hooks.onAutoplayBlocked());
  });
  video.addEventListener('timeupdate', () => {
    if (!video.seeking) resumeAt = video.currentTime;
  });
  const list = (video as unknown as { audioTracks?: NativeAudioTrackList }).audioTracks;
  list?.addEventListener('change', () => hooks.onAudioTracks());
  list?.addEventListener('addtrack', () => hooks.onAudioTracks());
  video.src = masterUrl;
  return {
    kind: 'native',
    audioTracks() {
      const out: AudioTrackChoice[] = [];
      for (let i = 0; list && i < list.length; i++) {
        const t = list[i]!;
        const choice: AudioTrackChoice = { id: i, label: t.label || t.language || `Audio ${i + 1}`, selected: t.enabled };
        if (t.language) choice.language = t.language;
        out.push(choice);
      }
      return out;
    },
    selectAudio(id) {
      for (let i = 0; list && i < list.length; i++) list[i]!.enabled = i === id;
    },
  };
}
