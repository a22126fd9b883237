/**
 * Watch anywhere: every audio track published and selectable (DASH and HLS), and the HLS link
 * played by hls.js in Chromium while the upload runs and after a seek into a part not uploaded yet.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { makeClip, makeTempDir, sh, videoFrameCount } from '../test/helpers/media.ts';
import { backendUp, ffprobeFrames, getStatus, openUploader, waitForComplete, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

interface TraceEntry {
  ev: string;
  track?: number;
  slot?: number;
}
const traces = (p: Page): Promise<TraceEntry[]> => p.evaluate(() => (globalThis as unknown as { __chunkstreamTrace?: TraceEntry[] }).__chunkstreamTrace ?? []);
const currentTime = (p: Page): Promise<number> => p.evaluate(() => document.querySelector('video')!.currentTime);

/** `codec,language` of each audio stream ffprobe finds (JSON: programs would repeat them in csv). */
async function audioStreams(url: string): Promise<string[]> {
  const out = await sh('ffprobe', ['-v', 'error', '-select_streams', 'a', '-show_entries', 'stream=codec_name:stream_tags=language', '-of', 'json', url]);
  const streams = (JSON.parse(out) as { streams?: { codec_name: string; tags?: { language?: string } }[] }).streams ?? [];
  return streams.map((s) => `${s.codec_name},${s.tags?.language ?? ''}`);
}

describe('watch anywhere', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-anywhere-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('a two-audio-track recording publishes both tracks; each player offers both and plays the one picked', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'obs.mp4'), {
      seconds: 16,
      x264params: 'keyint=60',
      audioTracks: [{ language: 'eng', handler: 'Desktop' }, { language: 'deu', handler: 'Microphone' }],
    });
    const up = await openUploader(browser.context, file, { seg: 4 });
    const { link, videoId } = await waitForLink(up);
    await waitForComplete(up, 120_000);
    const base = `${BASE_URL}/v/${videoId}`;
    // independent clients: ffprobe sees two audio streams in the MPD and in the HLS playlists
    assert.deepEqual(await audioStreams(`${base}/manifest.mpd`), ['aac,en', 'aac,de'], 'MPD audio streams');
    assert.deepEqual(await audioStreams(`${base}/master.m3u8`), ['aac,en', 'aac,de'], 'HLS audio renditions');
    assert.equal(await ffprobeFrames(`${base}/master.m3u8`), await videoFrameCount(file));
    const mpd = await (await fetch(`${base}/manifest.mpd`)).text();
    assert.match(mpd, /lang="en"[\s\S]*<Label>Desktop<\/Label>[\s\S]*value="main"/);
    assert.match(mpd, /lang="de"[\s\S]*<Label>Microphone<\/Label>[\s\S]*value="alternate"/);

    for (const player of ['dash', 'hls']) {
      const viewer = await browser.context.newPage();
      const log: string[] = [];
      viewer.on('pageerror', (e) => log.push(e.message));
      await viewer.goto(`${link}&player=${player}`);
      await viewer.waitForFunction(() => !document.getElementById('audio-row')!.hidden && document.querySelector('video')!.currentTime > 1, null, {
        timeout: 30_000,
        polling: 200,
      });
      const options = await viewer.$$eval('#audio-track option', (os) => os.map((o) => [o.textContent, (o as HTMLOptionElement).selected]));
      assert.deepEqual(options, [
        ['Desktop (en)', true],
        ['Microphone (de)', false],
      ], `${player}: picker`);
      await viewer.selectOption('#audio-track', '1');
      // the picked track's parts (track index 2 in the plan) are fetched and playback goes on
      await viewer.waitForFunction(
        () => ((globalThis as unknown as { __chunkstreamTrace?: TraceEntry[] }).__chunkstreamTrace ?? []).some((e) => e.ev === 'seg-loaded' && e.track === 2),
        null,
        { timeout: 20_000, polling: 200 },
      );
      const t = await currentTime(viewer);
      await viewer.waitForFunction((t0) => document.querySelector('video')!.currentTime > t0 + 1, t, { timeout: 20_000, polling: 200 });
      const selected = await viewer.$eval('#audio-track', (s) => (s as HTMLSelectElement).value);
      assert.equal(selected, '1', `${player}: the picker shows the picked track`);
      assert.equal(await viewer.evaluate(() => document.body.dataset.player), player);
      assert.deepEqual(log, []);
      await viewer.close();
    }
    await up.page.close();
  });

  it('hls.js plays the HLS link while uploading, and after a seek into a part not uploaded yet', { timeout: 240_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'hls.mp4'), { seconds: 90, x264params: 'keyint=60' });
    const size = (await stat(file)).size;
    const naturalTotal = 60; // seconds for the whole upload in natural order
    const up = await openUploader(browser.context, file, { seg: 4, bw: Math.round((size * 8) / naturalTotal) });
    const { link, videoId } = await waitForLink(up);
    const t0 = Date.now();
    const viewer = await browser.context.newPage();
    const log: string[] = [];
    viewer.on('pageerror', (e) => log.push(e.message));
    await viewer.goto(`${link}&player=hls`);
    await viewer.waitForFunction(() => document.querySelector('video')!.currentTime > 2, null, { timeout: 60_000, polling: 200 });
    let status = await getStatus(videoId);
    console.log(`hls.js playing ${Date.now() - t0} ms after the link; ${status.counts.published}/${status.slot_count} parts published`);
    assert.equal(status.complete, false, 'still uploading while hls.js plays');
    const target = status.duration * 0.8;
    const targetSlot = status.slots.findLastIndex((s) => s.start <= target);
    assert.notEqual(status.slots[targetSlot]!.state, 'published', 'the seek goes to a part not uploaded yet');
    // the part is not public yet: hls.js's request for it is held by the server (a 404 only
    // after the hold, which hls.js must retry) — either way it is asked for after the seek
    const asked: string[] = [];
    viewer.on('request', (r) => {
      if (new RegExp(`/seg/\\d+/${targetSlot}\\.m4s`).test(new URL(r.url()).pathname)) asked.push(r.url());
    });
    const tSeek = Date.now();
    await viewer.evaluate((t) => {
      document.querySelector('video')!.currentTime = t;
    }, target);
    await viewer.waitForFunction((t) => document.querySelector('video')!.currentTime > t + 1, target, { timeout: 90_000, polling: 200 });
    const latency = (Date.now() - tSeek) / 1000;
    status = await getStatus(videoId);
    const misses = (await traces(viewer)).filter((e) => e.ev === 'seg-miss' && e.slot === targetSlot).length;
    console.log(`hls.js: seek to ${target.toFixed(1)} s (slot ${targetSlot}) played after ${latency.toFixed(1)} s; ${asked.length} requests for it, ${misses} answered 404; ${status.counts.published}/${status.slot_count} published`);
    assert.ok(asked.length >= 1, 'the missing part was asked for');
    assert.equal(status.complete, false, 'the seek played before natural order would reach that part');
    assert.ok(latency < naturalTotal * 0.8 * 0.5, `seek took ${latency} s`);
    assert.deepEqual(log, []);
    await viewer.close();
    await up.page.close();
  });
});
