/**
 * Resume: pause an upload, reload the page, pick the same file again: the same session (same
 * link) continues and only the missing slots are uploaded.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, pageState, waitForComplete, waitForLink, reportedSlots } from './helpers/app.ts';
import type { UploadPage } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

describe('resume', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-resume-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('after a reload, the same file continues the same session and uploads only what is missing', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'resume.mp4'), { seconds: 60, x264params: 'keyint=60' });
    const size = (await stat(file)).size;
    const page = await browser.context.newPage();
    const creates: string[] = [];
    const reported: number[] = [];
    let phase = 1;
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (r.method() !== 'POST') return;
      if (path === '/api/videos') creates.push(`phase ${phase}`);
      if (phase === 2) reported.push(...reportedSlots(r));
    });
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    const up: UploadPage = { page, creates: [], logs };

    // phase 1: slow upload, paused once a few slots are published
    await page.goto(`${BASE_URL}/?seg=4&par=2&bw=${Math.round((size * 8) / 30)}`);
    await page.setInputFiles('#file', file);
    const first = await waitForLink(up);
    for (let i = 0; i < 200; i++) {
      if (((await getStatus(first.videoId)).counts.published ?? 0) >= 4) break;
      await page.waitForTimeout(250);
    }
    await page.click('#pause');
    await page.waitForFunction(() => document.body.dataset.state === 'paused', null, { timeout: 60_000 });
    const before = await getStatus(first.videoId);
    const done = new Set(before.slots.flatMap((s, i) => (s.state === 'published' || s.state === 'uploaded' ? [i] : [])));
    assert.ok(done.size >= 4 && done.size < before.slot_count, `${done.size} of ${before.slot_count} slots done before the reload`);

    // phase 2: reload, pick the same file (no bandwidth limit now)
    phase = 2;
    await page.goto(`${BASE_URL}/`);
    await page.setInputFiles('#file', file);
    const second = await waitForLink(up);
    assert.equal(second.videoId, first.videoId, 'same session, same link');
    assert.match((await page.textContent('#message')) ?? '', /Resuming/);
    await waitForComplete(up, 120_000);
    const after = await getStatus(first.videoId);
    assert.equal(after.complete, true);
    assert.deepEqual(creates, ['phase 1'], 'no second session');
    const again = reported.filter((s) => done.has(s));
    assert.deepEqual(again, [], 'slots done before the reload were not sent again');
    assert.equal(done.size + new Set(reported).size, after.slot_count, 'every missing slot was sent once');
    console.log(`resume: ${done.size}/${after.slot_count} slots done before the reload, ${reported.length} sent after it; state ${await pageState(page)}`);
  });
});
