/**
 * The uploader on a link throttled below the page (Chromium's network layer, CDP
 * Network.emulateNetworkConditions), default settings, checked from the uploader's own trace and
 * the requests it made — semantics, not timing:
 *  - init segments, then part 0 alone: part 0 completes before any other part's PUT starts;
 *  - a viewer's far slot pre-empts natural order: the natural PUT in flight is aborted, the far
 *    slot's PUT shares the link with no natural-order PUT beyond a short overlap, and the aborted
 *    part is sent again later; the upload completes with every part reported once and published;
 *  - the bandwidth estimate (from upload progress events) follows a rate change mid-upload.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CDPSession } from 'playwright-core';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, openUploader, waitForComplete, waitForLink, reportedSlots } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

interface TraceEntry {
  t: number;
  ev: string;
  [k: string]: unknown;
}

async function throttle(cdp: CDPSession, bitsPerSecond: number, latencyMs: number): Promise<void> {
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: latencyMs,
    uploadThroughput: bitsPerSecond / 8,
    downloadThroughput: -1,
  });
}

/** [start, end] of each PUT of a slot, from put-start to put-done / put-abort */
function putIntervals(trace: TraceEntry[]): { slot: number; start: number; end: number; aborted: boolean }[] {
  const open = new Map<number, number>();
  const out: { slot: number; start: number; end: number; aborted: boolean }[] = [];
  for (const e of trace) {
    const slot = e.slot as number;
    if (e.ev === 'put-start') open.set(slot, e.t);
    if ((e.ev === 'put-done' || e.ev === 'put-abort') && open.has(slot)) {
      out.push({ slot, start: open.get(slot)!, end: e.t, aborted: e.ev === 'put-abort' });
      open.delete(slot);
    }
  }
  return out;
}

describe('shaped link', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-shaped-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('part 0 goes alone, a viewer’s slot pre-empts natural order and goes alone, aborted parts go again, the rate estimate follows the link', { timeout: 300_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'shaped.mp4'), { seconds: 72, x264params: 'keyint=60:min-keyint=60:scenecut=0', bitrate: '1M' });
    const size = (await stat(file)).size;
    const rate1 = 6_000_000;
    const rate2 = 2_000_000;
    const reported = new Map<number, number>();
    // the page under test (default settings: no seg/par/bw parameters)
    const up = await openUploader(browser.context, file);
    const upCdp = await browser.context.newCDPSession(up.page);
    await upCdp.send('Network.enable');
    await throttle(upCdp, rate1, 20);
    up.page.on('response', (r) => {
      if (!r.ok()) return;
      for (const slot of reportedSlots(r.request())) reported.set(slot, (reported.get(slot) ?? 0) + 1);
    });
    const { videoId } = await waitForLink(up);
    const readTrace = async (): Promise<TraceEntry[]> =>
      (await up.page.evaluate(() => (window as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace ?? [])) as TraceEntry[];

    // a natural-order part is early in its PUT: a viewer seeks far ahead
    let status = await getStatus(videoId);
    const n = status.slot_count;
    assert.ok(n >= 12, `${n} parts (${size} bytes)`);
    const far = n - 3;
    let trace: TraceEntry[] = [];
    for (let i = 0; i < 600; i++) {
      trace = await readTrace();
      const done = trace.filter((e) => e.ev === 'put-done').length;
      const last = trace.filter((e) => e.ev === 'put-start').at(-1);
      if (done >= 3 && last && (last.slot as number) < far - 2 && performance.timeOrigin + performance.now() - last.t > 150) break;
      await up.page.waitForTimeout(25);
    }
    const res = await fetch(`${BASE_URL}/api/videos/${videoId}/prioritize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ slot: far }),
    });
    assert.equal(res.status, 200, await res.text());
    for (let i = 0; i < 600; i++) {
      status = await getStatus(videoId);
      if (status.slots[far]!.state === 'published') break;
      await up.page.waitForTimeout(50);
    }
    assert.equal(status.slots[far]!.state, 'published', 'the far slot was published');

    // the link gets slower mid-upload
    trace = await readTrace();
    const before = trace.filter((e) => e.ev === 'rate').at(-1)?.bps as number | undefined;
    await throttle(upCdp, rate2, 20);
    const changedAt = performance.timeOrigin + performance.now();
    await waitForComplete(up, 240_000);
    trace = await readTrace();

    // part 0 completes before any other part's PUT starts (and after the init segments)
    const puts = putIntervals(trace);
    const p0 = puts.find((p) => p.slot === 0 && !p.aborted)!;
    assert.ok(p0, 'part 0 was sent');
    // the init segments go on the link first; part 0 follows once their bytes are written, so its PUT may
    // start before their answers arrive (a round trip), but they are answered long before it completes
    const initStart = trace.filter((e) => e.ev === 'init-start').map((e) => e.t);
    const initDone = trace.filter((e) => e.ev === 'init-done').map((e) => e.t);
    assert.ok(initStart.length >= 1 && Math.max(...initStart) <= p0.start, 'init segments first');
    assert.ok(initDone.length === initStart.length && Math.max(...initDone) <= p0.end, 'init segments answered before part 0 completes');
    for (const p of puts.filter((x) => x.slot !== 0)) assert.ok(p.start >= p0.end, `part ${p.slot} started ${(p0.end - p.start).toFixed(0)} ms before part 0 completed`);

    // the far slot's PUT did not share the link with natural-order PUTs beyond a short overlap
    const pf = puts.find((p) => p.slot === far && !p.aborted)!;
    assert.ok(pf, 'the far slot was sent');
    const windowSlots = new Set([far, far + 1, far + 2, far + 3]);
    for (const p of puts.filter((x) => !windowSlots.has(x.slot))) {
      const overlap = Math.max(0, Math.min(p.end, pf.end) - Math.max(p.start, pf.start));
      assert.ok(overlap < 250, `part ${p.slot} shared the link with the viewer's part for ${overlap.toFixed(0)} ms`);
    }
    const aborted = puts.filter((p) => p.aborted);
    assert.ok(aborted.length >= 1, `a natural-order part in flight was aborted for the viewer (${JSON.stringify(trace.filter((e) => e.ev === 'yield'))})`);
    for (const a of aborted) assert.ok(puts.some((p) => p.slot === a.slot && !p.aborted && p.start > a.end), `aborted part ${a.slot} was sent again later`);

    // every part reported once, all published
    status = await getStatus(videoId);
    assert.ok(status.complete, 'the video is complete');
    for (let s = 0; s < n; s++) assert.equal(reported.get(s), 1, `part ${s} reported once`);

    // the estimate follows the link: near rate1 before the change, near rate2 some seconds after it
    const late = trace.filter((e) => e.ev === 'rate' && e.t > changedAt + 6000).map((e) => e.bps as number);
    console.log(`rate estimate ${before} bit/s at ${rate1}; after the change to ${rate2}: ${late.slice(-5).join(', ')}`);
    assert.ok(before !== undefined && before > rate1 * 0.6 && before < rate1 * 1.4, `estimate before ${before}`);
    assert.ok(late.length >= 2, 'estimates after the change');
    const med = late.sort((a, b) => a - b)[Math.floor(late.length / 2)]!;
    assert.ok(med > rate2 * 0.6 && med < rate2 * 1.4, `estimate after the change ${med}`);
    await up.page.close();
  });
});
