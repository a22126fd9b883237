/**
 * Resume from "My videos" without picking the file again (File System Access API, Chromium): the
 * page picks the file through its "choose a file" control with `showOpenFilePicker`, keeps the
 * handle in IndexedDB by video id, and after the page was closed half-way, Resume in a new page
 * reads the file through the handle and continues the same video, sending only the missing parts.
 * Only the system dialog is stubbed: `showOpenFilePicker` answers a real FileSystemFileHandle from
 * the origin-private file system holding the test clip. Without a kept handle (plain file input),
 * with the file gone, or with another file in its place, Resume says what to do instead.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, pageState, waitForComplete, waitForLink, reportedSlots } from './helpers/app.ts';
import type { UploadPage } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

/** What the init script adds to each page: the stubbed dialog, and how often it was opened. */
interface PickerStub {
  __e2ePick: string;
  __e2ePickerCalls: number;
}

/** The page's IndexedDB store of kept handles: its video ids. */
async function keptHandles(page: Page): Promise<string[]> {
  return page.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const req = indexedDB.open('chunkstream');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('file-handles')) {
            db.close();
            resolve([]);
            return;
          }
          const keys = db.transaction('file-handles', 'readonly').objectStore('file-handles').getAllKeys();
          keys.onsuccess = () => {
            db.close();
            resolve(keys.result.map(String));
          };
          keys.onerror = () => reject(keys.error);
        };
      }),
  );
}

/** Writes `bytes` (base64) into the origin-private file system as `name`. */
async function putInOpfs(page: Page, name: string, file: string): Promise<void> {
  const b64 = (await readFile(file)).toString('base64');
  await page.evaluate(
    async ([n, data]) => {
      const bin = atob(data);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const dir = await navigator.storage.getDirectory();
      const h = await dir.getFileHandle(n, { create: true });
      const w = await h.createWritable();
      await w.write(bytes);
      await w.close();
    },
    [name, b64] as const,
  );
}

function track(page: Page, label: string) {
  const t = { creates: [] as string[], reported: [] as number[], chooser: 0, logs: [] as string[] };
  page.on('request', (r) => {
    if (r.method() !== 'POST') return;
    const path = new URL(r.url()).pathname;
    if (path === '/api/videos') t.creates.push(label);
    t.reported.push(...reportedSlots(r));
  });
  page.on('filechooser', () => t.chooser++); // the <input type=file> dialog (must not open: the picker replaces it)
  page.on('console', (m) => t.logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => t.logs.push(`[pageerror] ${e.message}`));
  return t;
}

/** Slots the server has (uploaded or published), once its answer stops changing after the page closed. */
async function settledDone(videoId: string): Promise<{ done: Set<number>; slotCount: number }> {
  let last = '';
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const s = await getStatus(videoId);
    const done = s.slots.flatMap((x, k) => (x.state === 'published' || x.state === 'uploaded' ? [k] : []));
    const key = done.join(',');
    if (key === last) return { done: new Set(done), slotCount: s.slot_count };
    last = key;
  }
  throw new Error(`status of ${videoId} did not settle`);
}

/** Picks `name` (from the OPFS) through the page's real "choose a file" control; waits for the link. */
async function pickThroughControl(page: Page, name: string, logs: string[]): Promise<string> {
  await page.evaluate((n) => {
    (window as unknown as PickerStub).__e2ePick = n;
  }, name);
  await page.getByText('choose a file').click();
  const { videoId } = await waitForLink({ page, creates: [], logs });
  assert.equal(await page.evaluate(() => (window as unknown as PickerStub).__e2ePickerCalls), 1, 'the control opened the picker');
  return videoId;
}

async function waitPublished(videoId: string, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (((await getStatus(videoId)).counts.published ?? 0) >= n) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${videoId}: fewer than ${n} parts published`);
}

/**
 * Pauses the upload, then closes the page. (Closing it with uploads in flight is what a user may
 * do too, but LocalStack 4.13 can then keep a half-written object unreadable — seen once with the
 * runner's state.json, which made GET /api/me/videos answer 500 from then on — so the tests pause
 * first: what Resume has to do in the new page is the same.)
 */
async function pauseAndClose(page: Page): Promise<void> {
  // the link shows before the upload loop starts; a click before then is not a pause
  await page.waitForFunction(() => document.body.dataset.state === 'uploading', null, { timeout: 30_000 });
  await page.click('#pause');
  const after = await page.evaluate(() => document.body.dataset.state ?? '');
  assert.ok(after === 'pausing' || after === 'paused', `the click paused the upload (state ${after})`);
  await page.waitForFunction(() => document.body.dataset.state === 'paused', null, { timeout: 60_000 });
  await page.close();
}

async function clickResume(page: Page, videoId: string): Promise<void> {
  const row = page.locator(`#my-videos-list li[data-video-id="${videoId}"]`);
  await row.waitFor({ timeout: 15_000 });
  await row.getByRole('button', { name: 'Resume' }).click();
}

describe('resume from My videos through the kept file handle', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-resume-handle-');
    browser = await launch();
    // only the system dialog is stubbed: it answers a real handle from the origin-private file system
    await browser.context.addInitScript(() => {
      const w = window as unknown as PickerStub & { showOpenFilePicker: () => Promise<FileSystemFileHandle[]> };
      w.__e2ePickerCalls = 0;
      w.__e2ePick = '';
      w.showOpenFilePicker = async () => {
        w.__e2ePickerCalls++;
        const dir = await navigator.storage.getDirectory();
        return [await dir.getFileHandle(w.__e2ePick)];
      };
    });
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('after the page was closed with the upload unfinished, Resume continues the same video without picking the file', { timeout: 240_000 }, async () => {
    const clip = await makeClip(join(tmp.dir, 'handle.mp4'), { seconds: 60, x264params: 'keyint=60' });
    const size = (await stat(clip)).size;
    const name = 'Handle resume.mp4';

    // phase 1: picked through the page's control (the picker), slow upload, page closed half-way
    const page1 = await browser.context.newPage();
    const t1 = track(page1, 'phase 1');
    await page1.goto(`${BASE_URL}/?seg=4&par=2&bw=${Math.round((size * 8) / 30)}`);
    await putInOpfs(page1, name, clip);
    const videoId = await pickThroughControl(page1, name, t1.logs);
    await waitPublished(videoId, 4);
    assert.equal(await pageState(page1), 'uploading');
    assert.deepEqual(await keptHandles(page1), [videoId], 'the handle is kept in IndexedDB by video id');
    await pauseAndClose(page1);
    const { done, slotCount } = await settledDone(videoId);
    assert.ok(done.size >= 4 && done.size < slotCount, `${done.size} of ${slotCount} slots done when the page closed`);

    // phase 2: a new page, My videos, Resume: no file picked
    const page2 = await browser.context.newPage();
    const t2 = track(page2, 'phase 2');
    await page2.goto(`${BASE_URL}/`);
    await clickResume(page2, videoId);
    const up: UploadPage = { page: page2, creates: [], logs: t2.logs };
    const second = await waitForLink(up);
    assert.equal(second.videoId, videoId, 'same video, same link');
    assert.match((await page2.textContent('#message')) ?? '', /Resuming the upload of Handle resume\.mp4/);
    await waitForComplete(up, 150_000);
    const status = await getStatus(videoId);
    assert.equal(status.complete, true);
    assert.equal(status.counts.published, status.slot_count, 'every part published');
    assert.deepEqual([...t1.creates, ...t2.creates], ['phase 1'], 'no second session');
    assert.deepEqual(t2.reported.filter((s) => done.has(s)), [], 'parts done before the close were not sent again');
    assert.equal(done.size + new Set(t2.reported).size, slotCount, 'every missing part was sent');
    assert.equal(await page2.evaluate(() => (window as unknown as PickerStub).__e2ePickerCalls), 0, 'no file picked on Resume');
    assert.equal(t1.chooser + t2.chooser, 0, 'the file input dialog never opened');
    // complete: the handle is forgotten
    for (let i = 0; i < 40 && (await keptHandles(page2)).includes(videoId); i++) await page2.waitForTimeout(100);
    assert.deepEqual(await keptHandles(page2), [], 'no handle left in IndexedDB');
    console.log(`resume-handle: ${done.size}/${slotCount} parts done at the close, ${t2.reported.length} sent after Resume`);
    await page2.close();
  });

  it('without a kept handle (plain file input), Resume asks for the same file again', { timeout: 120_000 }, async () => {
    const clip = await makeClip(join(tmp.dir, 'Plain input.mp4'), { seconds: 20, x264params: 'keyint=60' });
    const size = (await stat(clip)).size;
    const page1 = await browser.context.newPage();
    const t1 = track(page1, 'phase 1');
    await page1.goto(`${BASE_URL}/?seg=2&par=1&bw=${Math.round((size * 8) / 40)}`);
    await page1.setInputFiles('#file', clip);
    const { videoId } = await waitForLink({ page: page1, creates: [], logs: t1.logs });
    assert.deepEqual(await keptHandles(page1), [], 'nothing kept for a file from the plain input');
    await pauseAndClose(page1);

    const page2 = await browser.context.newPage();
    const t2 = track(page2, 'phase 2');
    await page2.goto(`${BASE_URL}/`);
    await clickResume(page2, videoId);
    const message = page2.locator('#message');
    await message.waitFor({ state: 'visible', timeout: 10_000 });
    assert.match((await message.textContent()) ?? '', /To resume “Plain input”, pick the same file again/);
    assert.equal(await page2.inputValue('#link'), '', 'nothing started');
    assert.equal(await page2.evaluate(() => (window as unknown as PickerStub).__e2ePickerCalls), 0);
    assert.deepEqual(t2.creates, []);
    await page2.close();
  });

  it('permission not granted any more: Resume asks for it in the click; refused, it says so and keeps the handle', { timeout: 180_000 }, async () => {
    const clip = await makeClip(join(tmp.dir, 'perm.mp4'), { seconds: 20, x264params: 'keyint=60' });
    const size = (await stat(clip)).size;
    const name = 'Permission.mp4';
    const page1 = await browser.context.newPage();
    const t1 = track(page1, 'phase 1');
    await page1.goto(`${BASE_URL}/?seg=2&par=1&bw=${Math.round((size * 8) / 40)}`);
    await putInOpfs(page1, name, clip);
    const videoId = await pickThroughControl(page1, name, t1.logs);
    await pauseAndClose(page1);

    // the browser's permission prompt is a dialog too: stubbed, it records whether the page asked
    // while the Resume click's user activation lasted (Chromium refuses to prompt otherwise)
    const page2 = await browser.context.newPage();
    const t2 = track(page2, 'phase 2');
    await page2.goto(`${BASE_URL}/`);
    await page2.evaluate(() => {
      type Perm = { mode: string };
      const w = window as unknown as { __e2eAnswer: PermissionState; __e2eAsked: { mode: string; active: boolean }[] };
      w.__e2eAnswer = 'denied';
      w.__e2eAsked = [];
      const proto = FileSystemHandle.prototype as unknown as {
        queryPermission: (d: Perm) => Promise<PermissionState>;
        requestPermission: (d: Perm) => Promise<PermissionState>;
      };
      proto.queryPermission = async () => 'prompt';
      proto.requestPermission = async (d) => {
        w.__e2eAsked.push({ mode: d.mode, active: navigator.userActivation.isActive });
        return w.__e2eAnswer;
      };
    });
    const asked = () => page2.evaluate(() => (window as unknown as { __e2eAsked: { mode: string; active: boolean }[] }).__e2eAsked);
    await clickResume(page2, videoId);
    await page2.waitForFunction(() => /not allowed/.test(document.getElementById('message')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.match((await page2.textContent('#message')) ?? '', /not allowed to read “Permission\.mp4” again.*pick the same file again/);
    assert.deepEqual(await asked(), [{ mode: 'read', active: true }]);
    assert.equal(await page2.inputValue('#link'), '', 'nothing started');
    assert.ok((await keptHandles(page2)).includes(videoId), 'a refused permission keeps the handle (allowed next time)');

    await page2.evaluate(() => {
      (window as unknown as { __e2eAnswer: PermissionState }).__e2eAnswer = 'granted';
    });
    await clickResume(page2, videoId);
    const up: UploadPage = { page: page2, creates: [], logs: t2.logs };
    assert.equal((await waitForLink(up)).videoId, videoId, 'granted: the same video continues');
    assert.deepEqual(await asked(), [
      { mode: 'read', active: true },
      { mode: 'read', active: true },
    ]);
    await waitForComplete(up, 120_000);
    assert.equal((await getStatus(videoId)).complete, true);
    assert.deepEqual([...t1.creates, ...t2.creates], ['phase 1']);
    assert.equal(t1.chooser + t2.chooser, 0);
    await page2.close();
  });

  it('when the file was moved or replaced, Resume says so and forgets the handle', { timeout: 180_000 }, async () => {
    const clipA = await makeClip(join(tmp.dir, 'a.mp4'), { seconds: 20, x264params: 'keyint=60' });
    const other = await makeClip(join(tmp.dir, 'other.mp4'), { seconds: 16, x264params: 'keyint=30' });
    const size = (await stat(clipA)).size;
    const started: Record<'moved' | 'changed', string> = { moved: '', changed: '' };
    for (const what of ['moved', 'changed'] as const) {
      const page = await browser.context.newPage();
      const t = track(page, what);
      await page.goto(`${BASE_URL}/?seg=2&par=1&bw=${Math.round((size * 8) / 40)}`);
      const name = `Gone ${what}.mp4`;
      await putInOpfs(page, name, clipA);
      started[what] = await pickThroughControl(page, name, t.logs);
      assert.ok((await keptHandles(page)).includes(started[what]));
      await pauseAndClose(page);
    }

    const page2 = await browser.context.newPage();
    const t2 = track(page2, 'phase 2');
    await page2.goto(`${BASE_URL}/`);
    // one file deleted, the other overwritten with another clip
    await page2.evaluate(async () => {
      const dir = await navigator.storage.getDirectory();
      await dir.removeEntry('Gone moved.mp4');
    });
    await putInOpfs(page2, 'Gone changed.mp4', other);

    const message = page2.locator('#message');
    await clickResume(page2, started.moved);
    await page2.waitForFunction(() => /no longer where it was/.test(document.getElementById('message')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.match((await message.textContent()) ?? '', /“Gone moved\.mp4” is no longer where it was .*moved, renamed or deleted.*pick the same file again/);

    await clickResume(page2, started.changed);
    await page2.waitForFunction(() => /has changed/.test(document.getElementById('message')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.match((await message.textContent()) ?? '', /“Gone changed\.mp4” has changed since the upload started/);

    assert.equal(await page2.inputValue('#link'), '', 'nothing started');
    assert.deepEqual(t2.creates, [], 'no new video');
    for (let i = 0; i < 40 && (await keptHandles(page2)).length > 0; i++) await page2.waitForTimeout(100);
    const kept = await keptHandles(page2);
    assert.ok(!kept.includes(started.moved) && !kept.includes(started.changed), `handles of no more use forgotten (left: ${kept.join(', ')})`);
    await page2.close();
  });
});
