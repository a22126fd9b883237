/**
 * A file over 1 GB (a noisy 720p clip looped with -c copy, moov at the end) goes through the
 * whole pipeline (analysis, segment generation, upload, server-side validation) while the
 * uploader page's memory stays far below the file size. Sampled every 500 ms: CDP
 * Performance.getMetrics JSHeapUsedSize, and the renderer process' resident memory (VmRSS,
 * which also counts ArrayBuffers and Blob reads).
 */
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loopToSize, makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, openUploader, sampleMemory, waitForComplete, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('memory', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-mem-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup(); // the 1 GB file goes away with the temp dir
  });

  it('a ≥1 GB file is processed with bounded memory', { timeout: 480_000 }, async () => {
    const clip = await makeClip(join(tmp.dir, 'clip.mp4'), {
      seconds: 10,
      width: 1280,
      height: 720,
      noise: true,
      bitrate: '20M',
      x264params: 'keyint=60',
    });
    const big = await loopToSize(clip, join(tmp.dir, 'big.mp4'), GiB);
    await rm(clip);
    const size = (await stat(big)).size;
    assert.ok(size >= GiB, `generated ${size} bytes`);

    const t0 = Date.now();
    const up = await openUploader(browser.context, big);
    const memory = await sampleMemory(browser.context, up.page, browser.userDataDir);
    const { videoId } = await waitForLink(up, 60_000);
    const linkAfter = Date.now() - t0;
    await waitForComplete(up, 420_000);
    const { heap: heapPeak, rss: rssPeak, anon: anonPeak, samples } = await memory.stop();
    const status = await getStatus(videoId);
    const secs = (Date.now() - t0) / 1000;
    console.log(
      `${(size / MiB).toFixed(0)} MiB file, ${status.slot_count} slots: link after ${linkAfter} ms, complete after ${secs.toFixed(0)} s ` +
        `(${((size * 8) / secs / 1e6).toFixed(0)} Mbit/s); peak JS heap ${(heapPeak / MiB).toFixed(1)} MiB, ` +
        `peak renderer RSS ${(rssPeak / MiB).toFixed(1)} MiB (anonymous ${(anonPeak / MiB).toFixed(1)} MiB; ${samples} samples)`,
    );
    assert.equal(status.complete, true);
    assert.ok(samples > 5, 'memory was sampled during the run');
    assert.ok(heapPeak > 0 && heapPeak < 0.1 * size, `JS heap peak ${heapPeak} vs file ${size}`);
    assert.ok(anonPeak > 0 && anonPeak < 0.25 * size, `renderer anonymous RSS peak ${anonPeak} vs file ${size}`);
    assert.ok(rssPeak < 0.3 * size, `renderer RSS peak ${rssPeak} vs file ${size}`);
    await up.page.close();
  });
});
