/**
 * Which of the watch page's players (players.ts) a browser gets. Kept apart from the players so
 * the choice is testable without the player libraries (which need a DOM to load).
 */
export type PlayerKind = 'dash' | 'hls' | 'native';

export interface Capabilities {
  mse: boolean;
  mms: boolean;
  nativeHls: boolean;
}

export function capabilities(video: HTMLVideoElement): Capabilities {
  const w = globalThis as { MediaSource?: unknown; ManagedMediaSource?: unknown; WebKitMediaSource?: unknown };
  return {
    mse: typeof w.MediaSource === 'function' || typeof w.WebKitMediaSource === 'function',
    mms: typeof w.ManagedMediaSource === 'function',
    nativeHls: video.canPlayType('application/vnd.apple.mpegurl') !== '',
  };
}

/** MSE or ManagedMediaSource → dash.js; neither but native HLS → native; `?player=` overrides. */
export function choosePlayer(caps: Capabilities, requested: string | null): PlayerKind {
  if (requested === 'dash' || requested === 'hls' || requested === 'native') return requested;
  if (caps.mse || caps.mms) return 'dash';
  if (caps.nativeHls) return 'native';
  return 'dash'; // reports that the browser cannot play it
}
