/**
 * The uploader acts on a viewer's priority at once and yields the link (not a timing test):
 * while a throttled upload is going on in natural order, a prioritize for a far slot
 *  - reaches the uploader through the long poll, which asks for the slot (POST next) without
 *    waiting for a lane and aborts the natural-order slots whose bytes had not crossed the link;
 *  - gets the far slot published while the slots that were in flight at that moment (and every
 *    natural-order slot between them and the far one) are still unpublished;
 *  - the aborted slots are sent again afterwards with the assignment the uploader kept: each slot
 *    is handed out by `next` once and reported once.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir } from '../test/helpers/media.ts';
import { backendUp, getStatus, openUploader, waitForLink } from './helpers/app.ts';
import type { StatusJson } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

interface TraceEntry {
  t: number;
  ev: string;
  [k: string]: unknown;
}

describe('priority', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-prio-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('a far slot prioritized during a throttled upload overtakes the slots in flight, which are sent later with their kept leases', { timeout: 240_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'prio.mp4'), { seconds: 120, x264params: 'keyint=60' });
    const size = (await stat(file)).size;
    const bw = Math.round((size * 8) / 90); // natural order: ~90 s, ~3 s per slot
    const up = await openUploader(browser.context, file, { seg: 4, par: 3, bw });
    const assigned = new Map<number, number>(); // slot -> times handed out by next
    const reported = new Map<number, number>();
    up.page.on('response', async (r) => {
      const path = new URL(r.url()).pathname;
      if (r.request().method() !== 'POST') return;
      if (path.endsWith('/next') && r.ok()) {
        const body = (await r.json().catch(() => null)) as { assignments?: { slot: number }[] } | null;
        for (const a of body?.assignments ?? []) assigned.set(a.slot, (assigned.get(a.slot) ?? 0) + 1);
      }
      const m = /\/slots\/(\d+)\/uploaded$/.exec(path);
      if (m && r.ok()) reported.set(Number(m[1]), (reported.get(Number(m[1])) ?? 0) + 1);
    });
    const { videoId } = await waitForLink(up);

    let status: StatusJson = await getStatus(videoId);
    for (let i = 0; i < 400 && (status.counts.published ?? 0) < 2; i++) {
      await up.page.waitForTimeout(100);
      status = await getStatus(videoId);
    }
    const n = status.slot_count;
    const far = n - 4;
    const inFlight = status.slots.flatMap((s, i) => (s.state === 'assigned' ? [i] : []));
    assert.ok(inFlight.length >= 2, `slots in flight before the prioritize: ${inFlight.join(',')} (${JSON.stringify(status.counts)})`);
    assert.ok(Math.max(...inFlight) < far - 10);

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
    const unpublishedInFlight = inFlight.filter((s) => status.slots[s]!.state !== 'published');
    const firstInFlight = Math.min(...inFlight);
    const between = status.slots.slice(firstInFlight, far).filter((s) => s.state !== 'published').length;
    console.log(
      `slot ${far}/${n} published; of the slots in flight at the prioritize (${inFlight.join(',')}) ` +
        `${unpublishedInFlight.length} still unpublished; ${between}/${far - firstInFlight} slots between them and it unpublished`,
    );
    // at most the one slot whose bytes had already crossed the link may finish first
    assert.ok(unpublishedInFlight.length >= inFlight.length - 1, `in flight at the prioritize and already published: ${inFlight.filter((s) => !unpublishedInFlight.includes(s))}`);
    assert.ok(between >= far - firstInFlight - 2, `${between} of the ${far - firstInFlight} natural-order slots before it unpublished`);

    const trace = (await up.page.evaluate(() => (window as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace ?? [])) as TraceEntry[];
    const gotPriority = trace.find((e) => e.ev === 'priority' && (e.slots as number[]).includes(far));
    const asked = trace.find((e) => e.ev === 'next-response' && (e.slots as number[]).includes(far));
    const yielded = trace.filter((e) => e.ev === 'yield').flatMap((e) => e.slots as number[]);
    assert.ok(gotPriority, 'the long poll delivered the priority');
    assert.ok(asked && asked.reason === 'priority', 'the uploader asked for the slot as soon as it learned of it');
    assert.ok(yielded.length >= 1 && yielded.every((s) => inFlight.includes(s) || s > Math.max(...inFlight)), `yielded ${yielded}`);

    // the yielded slots go out again without new leases (no waiting for them to expire)
    for (let i = 0; i < 1200; i++) {
      status = await getStatus(videoId);
      if (inFlight.every((s) => status.slots[s]!.state === 'published')) break;
      await up.page.waitForTimeout(100);
    }
    assert.ok(inFlight.every((s) => status.slots[s]!.state === 'published'), 'the slots in flight at the prioritize were published later');
    for (const s of new Set([...inFlight, ...yielded, far])) {
      assert.equal(assigned.get(s), 1, `slot ${s} handed out by next once`);
      assert.equal(reported.get(s), 1, `slot ${s} reported once`);
    }
    console.log(`yielded ${yielded.join(',')}; each sent again with its kept assignment`);
    await up.page.close();
  });
});
