/**
 * Seek-bar previews in Chromium: web/src/lib/previews.ts decodes one keyframe per part with
 * WebCodecs and sends the sprites through the presign route before any part is uploaded; the VTT
 * and the MPD cover the whole duration; hovering the watch page's bar at 75 % shows the tile of the
 * part at 75 % (compared with the source frame by ffmpeg), and the first tile is the poster.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cueAt, parseThumbnailVtt } from '../src/lib/previews.ts';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { labScript, runLab } from './helpers/previews-lab.ts';
import { backendUp, getStatus, imageStats, openUploader, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

/** Mean gray level of an image region made by ffmpeg (`input` args, then a filter). */
async function meanGray(inputArgs: string[], filter: string): Promise<number> {
  const buf = await new Promise<Buffer>((resolve, reject) =>
    execFile('ffmpeg', ['-v', 'error', ...inputArgs, '-frames:v', '1', '-vf', filter, '-f', 'image2pipe', '-vcodec', 'png', '-'], { encoding: 'buffer', maxBuffer: 16 << 20 }, (e, out) =>
      e ? reject(e) : resolve(out),
    ),
  );
  return (await imageStats(buf)).mean;
}

describe('seek-bar previews', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let script = '';
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-previews-');
    browser = await launch();
    script = await labScript();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('previews of every part are public before any part is uploaded; hovering 75 % shows the tile for 75 %, the first tile is the poster', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'scenes.mp4'), { seconds: 60, scenes: true, x264params: 'keyint=60:min-keyint=20:scenecut=40' });
    const page = await browser.context.newPage();
    const lab = await runLab(page, script, file, 4);
    assert.ok(lab, 'Chromium decodes H.264 with WebCodecs');
    assert.equal(lab.tilesDrawn, lab.slotCount, `every part has its tile (${lab.note ?? ''})`);
    assert.equal(lab.tilesFailed, 0);
    assert.equal(lab.sprites, Math.ceil(lab.slotCount / 100));
    console.log(`previews: ${lab.slotCount} parts, ${lab.sprites} sprite(s), ${lab.bytes} bytes, decode ${lab.decodeMs} ms, encode ${lab.encodeMs} ms, send ${lab.sendMs} ms`);

    const status = await getStatus(lab.videoId);
    assert.equal(status.counts.published ?? 0, 0, 'no part uploaded');
    const base = `${BASE_URL}/v/${lab.videoId}`;
    const vttUrl = `${base}/previews/thumbnails.vtt`;
    const cues = parseThumbnailVtt(await (await fetch(vttUrl)).text(), vttUrl);
    assert.equal(cues.length, status.slot_count);
    assert.ok(Math.abs(cues.at(-1)!.end - status.duration) < 0.01, `VTT covers ${cues.at(-1)!.end} of ${status.duration} s`);
    for (const c of new Set(cues.map((c) => c.url))) assert.equal((await fetch(c)).status, 200, c);
    const mpd = await (await fetch(`${base}/manifest.mpd`)).text();
    assert.match(mpd, /contentType="image"[\s\S]*media="previews\/\$Number\$\.jpg"[\s\S]*schemeIdUri="http:\/\/dashif.org\/thumbnail_tile" value="10x10"/);

    // the tile for 75 % shows that part's first frame (and not another scene's)
    const target = 0.75 * status.duration;
    const cue = cueAt(cues, target)!;
    const sprite = join(tmp.dir, 'sprite.jpg');
    await writeFile(sprite, Buffer.from(await (await fetch(cue.url)).arrayBuffer()));
    const tileMean = await meanGray(['-i', sprite], `crop=${cue.w}:${cue.h}:${cue.x}:${cue.y}`);
    const sourceMean = await meanGray(['-ss', String(cue.start), '-i', file], `scale=${cue.w}:${cue.h}`);
    const otherMean = await meanGray(['-ss', '8', '-i', file], `scale=${cue.w}:${cue.h}`);
    console.log(`tile at ${cue.start} s: mean gray ${tileMean.toFixed(1)}; source ${sourceMean.toFixed(1)}; another scene ${otherMean.toFixed(1)}`);
    assert.ok(Math.abs(tileMean - sourceMean) < 8, `tile ${tileMean.toFixed(1)} vs source ${sourceMean.toFixed(1)}`);
    assert.ok(Math.abs(tileMean - otherMean) > 20, `tile ${tileMean.toFixed(1)} vs another scene ${otherMean.toFixed(1)}`);

    // a viewer hovers the bar at 75 %: the tile of that part, though no part is uploaded
    const viewer = await browser.context.newPage();
    await viewer.goto(`${BASE_URL}/watch.html?v=${lab.videoId}`);
    await viewer.waitForFunction(() => Number(document.getElementById('availability')!.dataset.previews) > 0, null, { timeout: 15_000 });
    await viewer.waitForFunction(() => document.querySelector('video')!.poster.startsWith('data:image/jpeg'), null, { timeout: 15_000 });
    const bar = (await viewer.locator('#availability').boundingBox())!;
    await viewer.waitForFunction(() => document.querySelector<HTMLElement>('#watch-status')!.textContent !== '', null, { timeout: 15_000 });
    await viewer.mouse.move(bar.x + 0.75 * bar.width, bar.y + bar.height / 2);
    await viewer.waitForFunction(() => document.getElementById('seek-preview')!.dataset.loaded === 'true', null, { timeout: 10_000 });
    const shown = await viewer.evaluate(() => document.getElementById('seek-preview')!.dataset.tile);
    assert.equal(shown, `${cue.url}#xywh=${cue.x},${cue.y},${cue.w},${cue.h}`);
    const shot = await viewer.locator('#seek-preview .tile').screenshot();
    const shownMean = (await imageStats(shot)).mean;
    assert.ok(Math.abs(shownMean - sourceMean) < 10, `shown ${shownMean.toFixed(1)} vs source ${sourceMean.toFixed(1)}`);
    await viewer.mouse.move(bar.x + 0.75 * bar.width, bar.y - 200);
    await viewer.waitForFunction(() => document.getElementById('seek-preview')!.hidden, null, { timeout: 5_000 });
    await viewer.close();
    await page.close();
  });

  it('during a real upload on a throttled link, the uploader sends every sprite ahead of natural order, and a viewer sees the tile of a part not uploaded yet', { timeout: 120_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'throttled.mp4'), { seconds: 40, x264params: 'keyint=60' });
    const up = await openUploader(browser.context, file, { seg: 4, bw: 150_000 });
    try {
      const { videoId } = await waitForLink(up);
      const layout = (await (await fetch(`${BASE_URL}/api/videos/${videoId}/previews`)).json()) as { sprites: number; tiles: number };
      const base = `${BASE_URL}/v/${videoId}/previews`;
      // the uploader page itself makes and sends the sprites (no test-side sending)
      let allPublic = false;
      for (let i = 0; i < 300 && !allPublic; i++) {
        const codes = await Promise.all(Array.from({ length: layout.sprites }, (_, n) => fetch(`${base}/${n}.jpg`).then((r) => r.status)));
        allPublic = codes.every((c) => c === 200);
        if (!allPublic) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(allPublic, 'every sprite was published by the uploader');
      const status = await getStatus(videoId);
      assert.equal(layout.tiles, status.slot_count);
      const done = status.slots.filter((s) => s.state === 'uploaded' || s.state === 'published').length;
      // part 0 (what the first viewer waits for) goes first, then the sprites ahead of natural order
      assert.ok(done <= 2, `${done} parts were up before the sprites (part 0 and at most the one on the link)`);
      const viewer = await browser.context.newPage();
      await viewer.goto(`${BASE_URL}/watch.html?v=${videoId}&noprioritize=1`);
      await viewer.waitForFunction(() => Number(document.getElementById('availability')!.dataset.previews) > 0, null, { timeout: 15_000 });
      await viewer.waitForFunction(() => document.querySelector<HTMLElement>('#watch-status')!.textContent !== '', null, { timeout: 15_000 });
      const bar = (await viewer.locator('#availability').boundingBox())!;
      await viewer.mouse.move(bar.x + 0.9 * bar.width, bar.y + bar.height / 2);
      await viewer.waitForFunction(() => document.getElementById('seek-preview')!.dataset.loaded === 'true', null, { timeout: 10_000 });
      const last = (await getStatus(videoId)).slots.at(-1)!;
      assert.notEqual(last.state, 'published', 'the part hovered is not uploaded yet');
      await viewer.close();
    } finally {
      await up.page.close();
    }
  });

  it('a codec WebCodecs cannot decode here (HEVC in Debian’s Chromium) makes no previews (buildPreviews resolves to null)', { timeout: 60_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'hevc.mp4'), { seconds: 6, codec: 'hevc', audio: false });
    const page = await browser.context.newPage();
    assert.equal(await runLab(page, script, file, 2), null);
    await page.close();
  });
});
