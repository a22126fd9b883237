/**
 * Viewers while the upload goes on (upload slowed down with the page's bandwidth setting):
 *  - a second page opens the link as soon as it appears and plays before the upload completes;
 *  - a viewer seeking to ~75 % early on gets that part long before natural order would reach it
 *    (the uploader, which waited on its wake-up URL while nobody watched, is woken by the watch
 *    page and holds its priority poll from then on);
 *  - a fully uploaded video plays (and seeks) as plain VOD.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, feedWaits, getStatus, imageStats, openUploader, pageState, pageTrace, waitForComplete, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

interface VideoState {
  t: number;
  paused: boolean;
  readyState: number;
  waiting: string;
  state: string;
  overlay: boolean;
}
const videoState = (p: Page): Promise<VideoState> =>
  p.evaluate(() => {
    const v = document.querySelector('video')!;
    return {
      t: v.currentTime,
      paused: v.paused,
      readyState: v.readyState,
      waiting: document.body.dataset.waiting ?? '',
      state: document.body.dataset.state ?? '',
      overlay: !document.getElementById('overlay')!.hidden,
    };
  });

async function openWatch(p: Page, link: string, log: string[]): Promise<void> {
  p.on('console', (m) => {
    if (!m.text().includes('Failed to load resource')) log.push(`[${m.type()}] ${m.text()}`);
  });
  p.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  await p.goto(link);
}

async function assertRealFrame(p: Page, label: string): Promise<void> {
  const shot = await p.locator('video').screenshot();
  const st = await imageStats(shot);
  console.log(`${label}: screenshot gray mean ${st.mean.toFixed(1)}, std ${st.std.toFixed(1)}, ${st.distinct} distinct levels`);
  assert.ok(st.std > 15 && st.distinct > 32, `${label}: the video frame looks black/uniform (${JSON.stringify(st)})`);
}

describe('watching while uploading', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-watch-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('a viewer opening the link at once plays before the upload completes', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'watch.mp4'), { seconds: 60, x264params: 'keyint=60' });
    const size = (await stat(file)).size;
    const bw = Math.round((size * 8) / 40); // ~40 s for the whole upload
    const up = await openUploader(browser.context, file, { seg: 4, bw });
    const t0 = Date.now();
    const { link, videoId } = await waitForLink(up);
    const viewer = await browser.context.newPage();
    const log: string[] = [];
    // the page's status polls: one full answer (the parts' times), then only the states
    const statusQueries: string[] = [];
    // and that it says it is open (the uploader's feed then watches closely), answered 204
    const watchingAnswers: number[] = [];
    viewer.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname === `/api/videos/${videoId}/status`) statusQueries.push(url.search);
    });
    viewer.on('response', (r) => {
      if (new URL(r.url()).pathname === `/api/videos/${videoId}/watching` && r.request().method() === 'POST') watchingAnswers.push(r.status());
    });
    await openWatch(viewer, link, log);
    await viewer.waitForFunction(() => document.querySelector('video')!.currentTime > 3, null, { timeout: 60_000, polling: 200 });
    const playingAfter = Date.now() - t0;
    for (let i = 0; i < 50 && statusQueries.length < 2; i++) await new Promise((r) => setTimeout(r, 200)); // polls are 2 s apart
    assert.ok(statusQueries.length >= 2, `status polled ${statusQueries.length} times`);
    assert.deepEqual(statusQueries.slice(0, 2), ['', '?parts=states'], 'a full status answer first, then the compact one');
    assert.ok(statusQueries.slice(1).every((q) => q === '?parts=states'), statusQueries.join(' '));
    assert.deepEqual(watchingAnswers, [204], 'one "watching" while uploading (the next is a minute later)');
    const status = await getStatus(videoId);
    const vs = await videoState(viewer);
    console.log(
      `viewer at ${vs.t.toFixed(1)} s after ${playingAfter} ms; upload: ${status.counts.published}/${status.slot_count} published, ` +
        `uploader state ${await pageState(up.page)} (bw ${bw} bit/s, ${size} bytes)`,
    );
    assert.equal(status.complete, false, 'the upload must still be running while the viewer plays');
    assert.equal(await pageState(up.page), 'uploading');
    assert.ok(vs.t > 3 && !vs.paused, 'playing');
    await assertRealFrame(viewer, 'while uploading');
    assert.ok(!log.some((l) => l.includes('pageerror')), log.join('\n'));
    await viewer.close();
    await up.page.close(); // stops this upload
  });

  it('seeking to ~75 % early in the upload plays that part long before natural order would', { timeout: 240_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'seek.mp4'), { seconds: 180, x264params: 'keyint=60' });
    const size = (await stat(file)).size;
    const naturalTotal = 120; // seconds for the whole upload in natural order at this rate
    const bw = Math.round((size * 8) / naturalTotal);
    const up = await openUploader(browser.context, file, { seg: 4, bw });
    const { link, videoId } = await waitForLink(up);
    // nobody watches yet: the uploader waits on its wake-up URL (an SQS long poll), not a held API poll
    for (let i = 0; i < 100 && (await feedWaits(up.page)).at(-1)?.mode !== 'wake'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await feedWaits(up.page)).at(-1)?.mode, 'wake', JSON.stringify(await feedWaits(up.page)));
    const viewer = await browser.context.newPage();
    const log: string[] = [];
    const tOpen = Date.now();
    await openWatch(viewer, link, log);
    await viewer.waitForFunction(() => document.querySelector('video')!.currentTime > 0.5, null, { timeout: 60_000, polling: 200 });
    const duration = await viewer.evaluate(() => document.querySelector('video')!.duration);
    const target = duration * 0.75;
    const tSeek = Date.now();
    await viewer.evaluate((t) => {
      document.querySelector('video')!.currentTime = t;
    }, target);
    // the viewer should see the "waiting for the uploader" state, not an error
    await viewer.waitForFunction(() => document.body.dataset.waiting === 'true', null, { timeout: 10_000, polling: 100 });
    await viewer.waitForFunction((t) => document.querySelector('video')!.currentTime > t + 1, target, { timeout: 120_000, polling: 200 });
    const latency = (Date.now() - tSeek) / 1000;
    const status = await getStatus(videoId);
    const targetSlot = status.slots.findLastIndex((s) => s.start <= target);
    const between = status.slots.slice(Math.floor(status.slot_count * 0.4), Math.max(0, targetSlot - 1));
    const unpublishedBetween = between.filter((s) => s.state !== 'published').length;
    const naturalEta = naturalTotal * 0.75;
    console.log(
      `seek to ${target.toFixed(1)} s (slot ${targetSlot}/${status.slot_count}) played after ${latency.toFixed(1)} s; ` +
        `natural order would reach it after ~${naturalEta.toFixed(0)} s; ${status.counts.published} slots published, ` +
        `${unpublishedBetween}/${between.length} slots between 40 % and the target still unpublished`,
    );
    assert.equal(status.slots[targetSlot]?.state, 'published');
    assert.ok(latency < naturalEta / 3, `seek took ${latency} s`);
    assert.ok(unpublishedBetween > between.length / 2, 'the target was uploaded out of order');
    assert.equal(status.complete, false);
    // the watch page rang the wake-up at once (SQS would hold it 20 s): parts are reported at once from
    // then on; the uploader holds its poll only once the viewer waits for a part (the seek)
    const trace = await pageTrace(up.page);
    const woken = trace.find((e) => e.ev === 'wake' && e.t >= tOpen);
    assert.ok(woken && woken.stray === false && woken.t - tOpen < 10_000, `woken ${woken ? woken.t - tOpen : '-'} ms after the page opened: ${JSON.stringify(woken)}`);
    const afterSeek = (await feedWaits(up.page)).filter((w) => w.t > tSeek).map((w) => w.mode);
    assert.ok(afterSeek.includes('hold'), `feed waits after the seek: ${afterSeek.join(' ')}`);
    await assertRealFrame(viewer, 'after seek');
    await viewer.close();
    await up.page.close();
  });

  it('a fully uploaded video plays and seeks as plain VOD', { timeout: 120_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'vod.mp4'), { seconds: 30, faststart: true });
    const up = await openUploader(browser.context, file);
    const { link } = await waitForLink(up);
    await waitForComplete(up, 90_000);
    const viewer = await browser.context.newPage();
    const log: string[] = [];
    await openWatch(viewer, link, log);
    await viewer.waitForFunction(() => document.body.dataset.state === 'complete' && document.querySelector('video')!.currentTime > 1, null, {
      timeout: 30_000,
      polling: 200,
    });
    await viewer.evaluate(() => {
      const v = document.querySelector('video')!;
      v.currentTime = v.duration * 0.8;
    });
    await viewer.waitForFunction(() => {
      const v = document.querySelector('video')!;
      return v.currentTime > v.duration * 0.8 + 0.5;
    }, null, { timeout: 20_000, polling: 200 });
    const vs = await videoState(viewer);
    assert.equal(vs.waiting, 'false');
    await assertRealFrame(viewer, 'VOD');
    await viewer.close();
    await up.page.close();
  });
});
