/**
 * Seek-bar previews in Chromium: web/src/lib/previews.ts decodes one keyframe per part with
 * WebCodecs and sends the sprites through the presign route before any part is uploaded; the VTT
 * and the MPD cover the whole duration; hovering the watch page's bar at 75 % shows the tile of the
 * part at 75 % (compared with the source frame by ffmpeg), and the first tile is the poster.
 * In a real upload on a throttled link the uploader page sends the sprites as soon as they are made,
 * beside part 0 when no viewer waits for it (public before part 0 is uploaded), and not while a viewer
 * who opened the link waits for part 0 (from the uploader's trace).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, CDPSession, Page, Route } from 'playwright-core';
import { cueAt, parseThumbnailVtt } from '../src/lib/previews.ts';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { labScript, runLab } from './helpers/previews-lab.ts';
import { backendUp, getStatus, imageStats, openUploader, waitForLink } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

interface TraceEntry {
  t: number;
  ev: string;
  [k: string]: unknown;
}

/** the page's `trace(...)` timeline (web/src/lib/trace.ts) */
async function readTrace(page: Page): Promise<TraceEntry[]> {
  return (await page.evaluate(() => (globalThis as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace ?? [])) as TraceEntry[];
}

/**
 * Holds the uploader page's GET of the preview layout (the first step of making the sprites) until
 * its trace satisfies `until`: the sprites are then made at a known point of the upload, as with a
 * long video whose keyframes take a while to decode. `page(p)` names the uploader page once open.
 */
async function holdPreviews(context: BrowserContext, until: (trace: TraceEntry[]) => boolean): Promise<{ page: (p: Page) => void; release: () => Promise<void> }> {
  let uploader: Page | null = null;
  const matches = (u: URL): boolean => /^\/api\/videos\/[^/]+\/previews$/.test(u.pathname);
  const handler = async (route: Route): Promise<void> => {
    const page = uploader;
    if (route.request().method() === 'GET' && page && route.request().frame().page() === page) {
      for (let i = 0; i < 1200; i++) {
        if (until(await readTrace(page).catch(() => []))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await route.continue();
  };
  await context.route(matches, handler);
  return {
    page: (p) => {
      uploader = p;
    },
    release: () => context.unroute(matches, handler),
  };
}

/** Chromium's network layer below the page (CDP), upload direction only */
async function throttle(cdp: CDPSession, bitsPerSecond: number, latencyMs: number): Promise<void> {
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: latencyMs, uploadThroughput: bitsPerSecond / 8, downloadThroughput: -1 });
}

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

  it('a video of more than 100 parts gets one sprite per 100 tiles, each encoded only after all its tiles are drawn', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'long.mp4'), { seconds: 300, scenes: true, x264params: 'keyint=60:min-keyint=20:scenecut=40' });
    const page = await browser.context.newPage();
    const lab = await runLab(page, script, file, 2);
    assert.ok(lab, 'Chromium decodes H.264 with WebCodecs');
    assert.ok(lab.slotCount > 100, `${lab.slotCount} parts`);
    assert.equal(lab.sprites, Math.ceil(lab.slotCount / 100));
    assert.equal(lab.tilesDrawn, lab.slotCount, `every part has its tile (${lab.note ?? ''})`);
    const vttUrl = `${BASE_URL}/v/${lab.videoId}/previews/thumbnails.vtt`;
    const cues = parseThumbnailVtt(await (await fetch(vttUrl)).text(), vttUrl);
    // the last tile of the first sprite, the first of the second, the very last: each shows its
    // part's first frame, not the blank a sprite encoded too early would hold
    for (const i of [99, 100, cues.length - 1]) {
      const cue = cues[i]!;
      const sprite = join(tmp.dir, `sprite-${i}.jpg`);
      await writeFile(sprite, Buffer.from(await (await fetch(cue.url)).arrayBuffer()));
      const tileMean = await meanGray(['-i', sprite], `crop=${cue.w}:${cue.h}:${cue.x}:${cue.y}`);
      const sourceMean = await meanGray(['-ss', String(cue.start), '-i', file], `scale=${cue.w}:${cue.h}`);
      assert.ok(Math.abs(tileMean - sourceMean) < 8, `tile ${i} (${cue.url}): ${tileMean.toFixed(1)} vs source ${sourceMean.toFixed(1)}`);
    }
    await page.close();
  });

  it('on a throttled link with no viewer, the uploader makes every sprite public before part 0 is uploaded (beside it), the VTT covers the whole duration, and a viewer sees the tile of a part not uploaded yet', { timeout: 180_000 }, async () => {
    // ~500 KB parts on a 400 kbit/s link (Chromium's network layer, as in shaped-link.test.ts; not
    // the `bw` Pacer, which models a serial link where nothing can go beside a part): part 0 alone
    // takes ~10 s, a sprite of this clip (tens of KB) well under 1 s beside it. The sprites are
    // made once part 0 is on the link (else they might simply go before it).
    const file = await makeClip(join(tmp.dir, 'throttled.mp4'), { seconds: 40, x264params: 'keyint=60', bitrate: '1M' });
    const held = await holdPreviews(browser.context, (t) => t.some((e) => e.ev === 'put-start' && e.slot === 0));
    const up = await openUploader(browser.context, file, { seg: 4 });
    held.page(up.page);
    const cdp = await browser.context.newCDPSession(up.page);
    await cdp.send('Network.enable');
    await throttle(cdp, 400_000, 20);
    try {
      const { videoId } = await waitForLink(up);
      const layout = (await (await fetch(`${BASE_URL}/api/videos/${videoId}/previews`)).json()) as { sprites: number; tiles: number };
      const base = `${BASE_URL}/v/${videoId}/previews`;
      // the uploader page itself makes and sends the sprites (no test-side sending)
      let allPublic = false;
      for (let i = 0; i < 600 && !allPublic; i++) {
        const codes = await Promise.all(Array.from({ length: layout.sprites }, (_, n) => fetch(`${base}/${n}.jpg`).then((r) => r.status)));
        allPublic = codes.every((c) => c === 200);
        if (!allPublic) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(allPublic, 'every sprite was published by the uploader');
      const status = await getStatus(videoId);
      assert.ok(!['uploaded', 'published'].includes(status.slots[0]!.state), `part 0 is ${status.slots[0]!.state} when the last sprite is public`);
      const vttUrl = `${base}/thumbnails.vtt`;
      const cues = parseThumbnailVtt(await (await fetch(vttUrl)).text(), vttUrl);
      assert.equal(layout.tiles, status.slot_count);
      assert.equal(cues.length, status.slot_count, 'one cue per part');
      assert.ok(cues[0]!.start < 0.01 && Math.abs(cues.at(-1)!.end - status.duration) < 0.01, `VTT covers ${cues[0]!.start}–${cues.at(-1)!.end} of ${status.duration} s`);
      for (const c of new Set(cues.map((c) => c.url))) assert.equal((await fetch(c)).status, 200, c);
      const trace = await readTrace(up.page);
      const p0 = trace.find((e) => e.ev === 'put-start' && e.slot === 0);
      const starts = trace.filter((e) => e.ev === 'side-start');
      assert.ok(p0 && starts.length === layout.sprites, `part 0 on the link, ${starts.length} side uploads`);
      assert.ok(starts.every((e) => (e.beside as number[]).includes(0)), 'the sprites went beside part 0');
      assert.ok(!trace.some((e) => e.ev === 'put-done' && e.slot === 0), 'the uploader has not finished part 0 either');
      console.log(`sprites public ${Math.round(Math.max(...trace.filter((e) => e.ev === 'side-done').map((e) => e.t)) - p0.t)} ms after part 0's PUT started (beside ${JSON.stringify(starts.map((e) => e.beside))})`);

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
      await held.release();
      await cdp.detach().catch(() => undefined);
      await up.page.close();
    }
  });

  it('a viewer who opens the link at once waits for part 0: no sprite starts while part 0 is the viewer’s priority', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'viewer-first.mp4'), { seconds: 40, x264params: 'keyint=60', bitrate: '1M' });
    // The sprites are made only once the viewer's priority for part 0 has reached the uploader: the
    // case of a long video whose keyframes take longer to decode than a viewer takes to open the
    // link. Semantics from the uploader's trace, not timing.
    const held = await holdPreviews(browser.context, (t) => t.some((e) => e.ev === 'priority' && (e.slots as number[]).includes(0)));
    const up = await openUploader(browser.context, file, { seg: 4 });
    held.page(up.page);
    const cdp = await browser.context.newCDPSession(up.page);
    await cdp.send('Network.enable');
    await throttle(cdp, 400_000, 20);
    const viewer = await browser.context.newPage();
    try {
      const { link } = await waitForLink(up);
      await viewer.goto(link); // prioritizes part 0 (its misses are hints too)
      let trace: TraceEntry[] = [];
      for (let i = 0; i < 1200 && !trace.some((e) => e.ev === 'put-done' && e.slot === 0); i++) {
        await new Promise((r) => setTimeout(r, 100));
        trace = await readTrace(up.page);
      }
      const p0Done = trace.find((e) => e.ev === 'put-done' && e.slot === 0)?.t;
      assert.ok(p0Done, 'part 0 was sent');
      const prio = trace.find((e) => e.ev === 'priority' && (e.slots as number[]).includes(0))?.t;
      assert.ok(prio !== undefined && prio < p0Done, 'the uploader knew the viewer waits for part 0 before part 0 was through');
      const ready = trace.find((e) => e.ev === 'side-ready' && (e.count as number) > 0)?.t;
      assert.ok(ready !== undefined && ready < p0Done, 'the sprites were made while part 0 was on the link (pending)');
      const early = trace.filter((e) => e.ev === 'side-start' && e.t >= prio && e.t < p0Done);
      assert.deepEqual(early, [], 'no sprite started while the viewer waited for part 0');
      assert.ok(!trace.some((e) => e.ev === 'side-start' && e.t < p0Done), 'no sprite went beside part 0');
    } finally {
      await held.release();
      await viewer.close();
      await cdp.detach().catch(() => undefined);
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
