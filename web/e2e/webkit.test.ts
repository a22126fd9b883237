/**
 * Watch in a WebKit engine (the Safari family): Debian's WebKitGTK through WebKitWebDriver and
 * MiniBrowser (helpers/webkit.ts). The upload runs in Chromium, slowed so it is still going on
 * while WebKit plays:
 *  - the watch page's MSE path (dash.js) plays from the start while uploading, and a seek into a
 *    part not uploaded yet plays once that part arrives — on several page loads, since the
 *    deadlock this guards against (docs/webkit.md) came on about one load in three;
 *  - native HLS on the `<video>` element (the path of a browser without MSE, like an iPhone before
 *    iOS 17.1) plays the HLS link while uploading and after a seek into a part not uploaded yet.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, openUploader, waitForLink } from './helpers/app.ts';
import type { UploadPage } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';
import { assertWebKitInstalled, WebKit } from './helpers/webkit.ts';

interface Playback {
  t: number;
  ready: number;
  paused: boolean;
  player: string;
  error: string | null;
}
/** MiniBrowser settings: the watch page may start playing by itself, as after a tap on a phone. */
const AUTOPLAY = { 'autoplay-policy': 'allow', 'media-playback-requires-user-gesture': false };

/** A page function: what the `<video>` is doing, and which player the watch page chose. */
const PLAYBACK_FN = `function playback() {
  const v = document.querySelector('video');
  if (!v) return { t: -1, ready: -1, paused: true, player: '', error: null };
  return { t: v.currentTime, ready: v.readyState, paused: v.paused, player: document.body.dataset.player || '', error: v.error ? String(v.error.code) : null };
}`;

/** The watch page plays (time past `after`) or throws, with what the page and WebKit said. */
async function waitPlaying(wk: WebKit, after: number, timeoutMs: number, what: string): Promise<Playback> {
  try {
    return await wk.waitFor<Playback>(`${PLAYBACK_FN} const p = playback(); return p.t > arguments[0] ? p : null;`, [after], timeoutMs, what);
  } catch (e) {
    const now = await wk.evaluate<Playback>(`${PLAYBACK_FN} return playback();`).catch(() => null);
    throw new Error(`${(e as Error).message}; now ${JSON.stringify(now)}\n${wk.log.slice(-15).join('\n')}`);
  }
}

// SKIP_WEBKIT=1: set-up was told not to install WebKitGTK (scripts/setup.sh), so say so here
describe('watch in WebKit', { skip: process.env.SKIP_WEBKIT === '1' && 'SKIP_WEBKIT=1' }, () => {
  let chromium: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let file: string;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    await assertWebKitInstalled();
    tmp = await makeTempDir('chunkstream-e2e-webkit-');
    chromium = await launch();
    // x264 defaults: B-frames and the edit list that comes with them (the case WebKit choked on)
    file = await makeClip(join(tmp.dir, 'webkit.mp4'), { seconds: 90, x264params: 'keyint=60' });
  });
  after(async () => {
    await chromium?.close();
    await tmp?.cleanup();
  });

  /** Starts an upload that takes ~`seconds` in natural order; returns the page and the link. */
  async function slowUpload(seconds: number): Promise<{ up: UploadPage; link: string; videoId: string }> {
    const size = (await stat(file)).size;
    const up = await openUploader(chromium.context, file, { seg: 4, bw: Math.round((size * 8) / seconds) });
    return { up, ...(await waitForLink(up)) };
  }

  /**
   * Opens `url` in `wk`: it plays while the upload runs, then a seek into the first part not
   * uploaded yet from 60 % on plays once that part arrives, before natural order gets there.
   */
  async function playThenSeekIntoMissingPart(wk: WebKit, url: string, videoId: string, player: string, what: string): Promise<void> {
    const t0 = Date.now();
    await wk.goto(url);
    const first = await waitPlaying(wk, 1, 60_000, `${what}: playing from the start`);
    assert.equal(first.player, player);
    let status = await getStatus(videoId);
    console.log(`webkit ${what}: playing ${Date.now() - t0} ms after opening; ${status.counts.published}/${status.slot_count} parts published`);
    assert.equal(status.complete, false, 'still uploading while WebKit plays');
    const targetSlot = status.slots.findIndex((s, i) => i >= Math.floor(status.slot_count * 0.6) && s.state !== 'published');
    assert.ok(targetSlot >= 0, 'a part left to seek into');
    const target = status.slots[targetSlot]!.start + 0.5;
    const tSeek = Date.now();
    await wk.evaluate('document.querySelector("video").currentTime = arguments[0];', [target]);
    await waitPlaying(wk, target + 1, 90_000, `${what}: playing after the seek to ${target.toFixed(1)} s (part ${targetSlot})`);
    status = await getStatus(videoId);
    console.log(`webkit ${what}: seek to ${target.toFixed(1)} s played after ${((Date.now() - tSeek) / 1000).toFixed(1)} s; ${status.counts.published}/${status.slot_count} published`);
    assert.equal(status.complete, false, 'the seek played before natural order reached that part');
  }

  it('the MSE path (dash.js) plays while uploading and after a seek into a part not uploaded yet, on every load', { timeout: 420_000 }, async () => {
    const { up, link, videoId } = await slowUpload(150);
    const loads = 3;
    for (let load = 1; load <= loads; load++) {
      const wk = await WebKit.launch({ settings: AUTOPLAY });
      try {
        await playThenSeekIntoMissingPart(wk, `${link}&player=dash`, videoId, 'dash', `load ${load}`);
      } finally {
        await wk.close();
      }
    }
    await up.page.close();
  });

  it('native HLS (the path of a browser without MSE) plays the HLS link while uploading and after a seek into a part not uploaded yet', { timeout: 240_000 }, async () => {
    const { up, link, videoId } = await slowUpload(120);
    // WebKitGTK's GStreamer HLS is off unless this is set (docs/webkit.md); Safari's is always on.
    // WebKitGTK 2.50 ignores its enable-mediasource setting (MSE cannot be switched off), so the
    // page is told to take the native path (the choice itself, no MSE -> native, is a unit test).
    const wk = await WebKit.launch({ settings: AUTOPLAY, env: { WEBKIT_GST_ENABLE_HLS_SUPPORT: '1' } });
    try {
      await playThenSeekIntoMissingPart(wk, `${link}&player=native`, videoId, 'native', 'native HLS');
    } finally {
      await wk.close();
    }
    await up.page.close();
  });
});
