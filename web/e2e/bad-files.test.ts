/**
 * Files that must not start an upload: a readable message, and no session created
 * (checked on the wire: the page makes no POST /api/videos).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, openUploader, pageState } from './helpers/app.ts';
import type { UploadPage } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

async function settled(up: UploadPage): Promise<string> {
  await up.page.waitForFunction(() => ['error', 'confirm', 'uploading', 'complete', 'cancelled'].includes(document.body.dataset.state ?? ''), null, {
    timeout: 30_000,
  });
  return pageState(up.page);
}

describe('bad files', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-bad-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('a text file named .mp4: readable message, no session', async () => {
    const file = join(tmp.dir, 'notes.mp4');
    await writeFile(file, 'Meeting notes\n- ship it\n'.repeat(200));
    const up = await openUploader(browser.context, file);
    assert.equal(await settled(up), 'error');
    const msg = (await up.page.textContent('#message')) ?? '';
    console.log(`text file: "${msg}"`);
    assert.match(msg, /not an MP4/i);
    assert.match(msg, /Nothing was uploaded/);
    assert.ok(await up.page.isHidden('#share'), 'no link shown');
    assert.equal(up.creates.length, 0, 'no session created');
  });

  it('truncated MP4s (moov first, and moov at the end): readable message, no session', async () => {
    const fast = await makeClip(join(tmp.dir, 'fast.mp4'), { seconds: 10, faststart: true });
    const end = await makeClip(join(tmp.dir, 'end.mp4'), { seconds: 10 });
    for (const [name, src] of [
      ['moov first', fast],
      ['moov at the end', end],
    ] as const) {
      const bytes = await readFile(src);
      const cut = join(tmp.dir, `cut-${name.replace(/ /g, '-')}.mp4`);
      await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
      const up = await openUploader(browser.context, cut);
      assert.equal(await settled(up), 'error');
      const msg = (await up.page.textContent('#message')) ?? '';
      console.log(`truncated (${name}): "${msg}"`);
      assert.match(msg, /truncated/i);
      assert.equal(up.creates.length, 0, 'no session created');
      await up.page.close();
    }
  });

  it('HEVC: a warning the user must confirm; declining creates no session', async () => {
    const file = await makeClip(join(tmp.dir, 'hevc.mp4'), { seconds: 4, codec: 'hevc' });
    const up = await openUploader(browser.context, file);
    assert.equal(await settled(up), 'confirm', 'Debian Chromium cannot play HEVC: a warning is expected');
    const text = (await up.page.textContent('#confirm-text')) ?? '';
    console.log(`HEVC warning: "${text}"`);
    assert.match(text, /HEVC/);
    assert.ok(await up.page.isVisible('#confirm-yes'));
    await up.page.click('#confirm-no');
    assert.equal(await pageState(up.page), 'cancelled');
    assert.match((await up.page.textContent('#message')) ?? '', /Nothing was uploaded/);
    await up.page.waitForTimeout(500);
    assert.equal(up.creates.length, 0, 'no session created');
    // choosing to continue uploads it (for viewers whose browser can play HEVC)
    await up.page.setInputFiles('#file', file);
    await up.page.waitForFunction(() => document.body.dataset.state === 'confirm');
    await up.page.click('#confirm-yes');
    await up.page.waitForFunction(() => ['complete', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: 60_000 });
    assert.equal(await pageState(up.page), 'complete', (await up.page.textContent('#message')) ?? '');
    assert.equal(up.creates.length, 1);
  });

  it('a watch link to an unknown video: readable message', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${BASE_URL}/watch.html?v=AAAAAAAAAAAAAAAAAAAAAA`);
    await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 20_000 });
    assert.match((await page.textContent('#watch-error')) ?? '', /does not exist/);
    await page.close();
  });
});
