/**
 * "My videos" on the uploader page, in a real Chromium against the real runner: an upload appears
 * in the list with its title from the file name; Delete (confirmed) removes it from the list and
 * from the server (its manifest answers 404). With a server that needs keys, the page asks for one
 * and remembers it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, manifestUrl, openUploader, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

describe('my videos', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-mine-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('lists an upload by its file name and deletes it everywhere', async () => {
    const open = (await fetch(`${BASE_URL}/api/me`)).status === 200;
    const key = process.env.CHUNKSTREAM_E2E_API_KEY;
    assert.ok(open || key, 'the runner needs keys: set CHUNKSTREAM_E2E_API_KEY to its development key');
    const file = await makeClip(join(tmp.dir, 'Team demo.mp4'), { seconds: 12, faststart: true });
    if (key) await browser.context.addInitScript((k) => localStorage.setItem('chunkstream:api-key', k), key);
    const up = await openUploader(browser.context, file, { seg: 2 });
    const { videoId } = await waitForLink(up);
    const row = up.page.locator(`#my-videos-list li[data-video-id="${videoId}"]`);
    await row.waitFor({ timeout: 10_000 });
    assert.match((await row.textContent()) ?? '', /Team demo/);
    up.page.on('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Delete' }).click();
    await row.waitFor({ state: 'detached', timeout: 10_000 });
    const manifest = await fetch(manifestUrl(videoId));
    assert.equal(manifest.status, 404);
    // a viewer who opens the link afterwards is told why, and the page stops polling
    const viewer = await browser.context.newPage();
    await viewer.goto(`${BASE_URL}/watch.html?v=${videoId}`);
    const error = viewer.locator('#watch-error');
    await error.waitFor({ state: 'visible', timeout: 15_000 });
    assert.match((await error.textContent()) ?? '', /deleted by its owner/);
    await viewer.close();
    await up.page.close();
  });
});
