import { sleep } from './api.ts';

/**
 * Upload bandwidth limit, shared by all parallel uploads.
 *
 * Models a serial link of `bitsPerSecond`: each body reserves the next `bytes * 8 / rate`
 * seconds of the link and is released (its PUT starts) at the end of that window, so the
 * average upload rate matches the limit and a segment becomes available on the server no earlier
 * than it would over such a link. (Browsers can't stream a paced request body over HTTP/1.1, so
 * pacing is per segment, not per packet.)
 */
export class Pacer {
  private linkFreeAt = 0;
  constructor(readonly bitsPerSecond: number | null) {}

  get limited(): boolean {
    return this.bitsPerSecond !== null && this.bitsPerSecond > 0;
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!this.limited) return;
    const now = performance.now();
    const start = Math.max(now, this.linkFreeAt);
    this.linkFreeAt = start + (bytes * 8 * 1000) / this.bitsPerSecond!;
    const wait = this.linkFreeAt - now;
    if (wait > 0) await sleep(wait, signal);
  }
}
