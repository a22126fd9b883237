/**
 * Upload through the real page (file input) to the real backend; the published MPD and HLS
 * playlists must each decode to as many video frames as the source. Nobody watches while these
 * upload: the priority feed waits on its wake-up URLs (SQS), not on held API polls.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir, videoFrameCount } from '../test/helpers/media.ts';
import type { ClipOptions } from '../test/helpers/media.ts';
import { backendUp, feedWaits, ffprobeFrames, getStatus, manifestUrl, openUploader, pageTrace, waitForComplete, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

const cases: [string, ClipOptions][] = [
  ['moov at the end', { seconds: 30 }],
  ['faststart', { seconds: 30, faststart: true }],
  ['irregular keyframes (spliced scenes, keyint=450:min-keyint=20:scenecut=40)', { seconds: 45, scenes: true, x264params: 'keyint=450:min-keyint=20:scenecut=40' }],
  ['video only', { seconds: 30, audio: false, faststart: true }],
  ['VP9 in MP4', { seconds: 20, codec: 'vp9' }],
  ['QuickTime MOV', { seconds: 20 }],
  [
    'OBS-like fragmented MP4 (empty moov + mvex, two audio tracks)',
    {
      seconds: 20,
      x264params: 'keyint=60',
      audioTracks: [{ handler: 'Desktop' }, { handler: 'Mic' }],
      extra: ['-movflags', '+frag_keyframe+empty_moov+delay_moov+default_base_moof', '-frag_duration', '700000'],
    },
  ],
];

describe('upload through the page', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL} (start it with scripts/run.sh or set CHUNKSTREAM_URL)`);
    tmp = await makeTempDir('chunkstream-e2e-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  cases.forEach(([name, opts], i) => {
    it(`${name}: completes, and the MPD decodes to the source's frame count`, { timeout: 240_000 }, async () => {
      const file = await makeClip(join(tmp.dir, `clip${i}.${name.includes('MOV') ? 'mov' : 'mp4'}`), opts);
      const sourceFrames = await videoFrameCount(file);
      const t0 = Date.now();
      const up = await openUploader(browser.context, file);
      const { link, videoId } = await waitForLink(up);
      const linkAfter = Date.now() - t0;
      await waitForComplete(up, 180_000);
      const status = await getStatus(videoId);
      assert.equal(status.complete, true);
      assert.equal(status.counts.published, status.slot_count);
      assert.equal(await up.page.textContent('#slot-summary').then((t) => /(\d+) of (\d+) parts playable/.exec(t ?? '')?.[1]), String(status.slot_count));
      const frames = await ffprobeFrames(manifestUrl(videoId));
      console.log(`${name}: link after ${linkAfter} ms, complete after ${Date.now() - t0} ms, ${status.slot_count} slots, ${frames}/${sourceFrames} frames`);
      assert.equal(frames, sourceFrames);
      // the HLS playlists beside the MPD, read by ffmpeg's HLS demuxer, decode to the same count
      assert.equal(await ffprobeFrames(`${BASE_URL}/v/${videoId}/master.m3u8`), sourceFrames, 'HLS frames');
      assert.equal(up.creates.length, 1, 'exactly one session created');
      // the first feed request answers at once; with no watch page open every later wait was on a wake-up URL
      const waits = (await feedWaits(up.page)).map((w) => w.mode);
      assert.ok(waits.length >= 2 && waits.slice(1).every((m) => m === 'wake'), `feed waits: ${waits.join(' ')}`);
      const strays = (await pageTrace(up.page)).filter((e) => e.ev === 'wake' && e.stray !== false);
      assert.deepEqual(strays, [], 'no wake-up came back at once for nothing (a URL the queue refuses)');
      // and Chromium plays it (video frames and, if any, audio decoded through MSE)
      const viewer = await browser.context.newPage();
      await viewer.goto(link);
      await viewer.waitForFunction(
        (audio) => {
          const v = document.querySelector('video') as HTMLVideoElement & { webkitAudioDecodedByteCount?: number; webkitVideoDecodedByteCount?: number };
          return v.currentTime > 1.5 && (v.webkitVideoDecodedByteCount ?? 1) > 0 && (!audio || (v.webkitAudioDecodedByteCount ?? 1) > 0);
        },
        opts.audio !== false,
        { timeout: 30_000, polling: 200 },
      );
      await viewer.close();
      await up.page.close();
    });
  });
});
