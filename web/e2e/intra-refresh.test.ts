/**
 * An x264 intra-refresh recording (one IDR frame, then recovery-point frames that the MP4 marks as
 * sync samples although they are not IDR frames): a seek to 80 % plays.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, openUploader, waitForComplete, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

describe('intra-refresh sources', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-ir-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('a seek to 80 % of an intra-refresh video plays', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'ir.mp4'), { seconds: 40, x264params: 'keyint=60:intra-refresh=1' });
    const up = await openUploader(browser.context, file, { seg: 4 });
    const { link } = await waitForLink(up);
    await waitForComplete(up, 120_000);
    const notice = await up.page.textContent('#message');
    console.log(`uploader notice: ${notice}`);
    for (const player of ['dash', 'hls']) {
      const viewer = await browser.context.newPage();
      await viewer.goto(`${link}&player=${player}`);
      await viewer.waitForFunction(() => document.querySelector('video')!.currentTime > 1, null, { timeout: 30_000, polling: 200 });
      const target = await viewer.evaluate(() => {
        const v = document.querySelector('video')!;
        v.currentTime = v.duration * 0.8;
        return v.currentTime;
      });
      const t0 = Date.now();
      await viewer.waitForFunction((t) => {
        const v = document.querySelector('video') as HTMLVideoElement & { webkitDecodedFrameCount?: number };
        return v.currentTime > t + 1 && !v.seeking;
      }, target, { timeout: 30_000, polling: 200 });
      console.log(`${player}: seek to ${target.toFixed(1)} s played after ${Date.now() - t0} ms`);
      await viewer.close();
    }
    await up.page.close();
  });
});
